// Package app is the module manager: each module registers a name, its
// dependencies and a constructor; a run starts the targets' modules in
// dependency order and stops them in reverse.
//
// Invariants: a module is constructed only after all its dependencies are
// running, so constructors may use what those expose; a failure of any
// module stops every started module, newest first; Run returns only after
// every started module's Run has returned.
package app
