// Package graph compiles the processors and views of a config into a
// checked event graph: Bloblang parsed in a pure environment, subjects
// validated, edges derived from the subjects each node emits and consumes,
// and cycles rejected unless a node on them is declared bounded.
//
// Invariants: a Graph returned by Compile has no unbounded cycle; every
// node's outputs are under ev.; the Bloblang environment cannot read files
// or the environment (OnlyPure, imports disabled).
package graph
