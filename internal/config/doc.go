// Package config is Ops's configuration: one YAML document, layered as
// defaults, then the file, then OPS_<PATH> environment variables, then flags.
//
// Invariants: every key in a file maps to a field (unknown keys are errors
// that name the key path and line); a Config returned by Load has passed
// Validate; errors are collected, not stopped at the first, so check-config
// reports every problem in one run.
package config
