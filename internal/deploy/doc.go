// Package deploy tracks what version of each service runs where, with
// which configuration.
//
// A deployment is an event on the aggregate of its service and environment
// (agg.deploy.<service>.<env> on the AGG stream, kept for good): started,
// succeeded, failed or rolled back, with its version, commit, hosts, who
// recorded it and the SHA-256 of its config snapshot, which is stored once
// in the BLOBS object store under that hash. Hosts report what they
// actually run as ev.deploy.heartbeat events. The module folds both into
// memory (replayed from the bus at start) and answers: the desired version
// per service and environment, history, drift (a host running another
// version or config, or silent), config diffs and DORA figures.
//
// Invariants: a deployment's service, environment and version never change
// after its first event; a status, once final (failed, rolled back), does
// not change again, and repeating a status is a no-op, so a CI job that
// retries a record stores it once.
package deploy
