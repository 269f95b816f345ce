// Package views runs the materialized views of the event graph. A view is a
// durable consumer on EVENTS that folds events into keyed rows kept in the
// KV bucket VIEW_<name>, and publishes every change of a row as an event
// (ev.view.<name>.created|updated|deleted) that other nodes consume.
//
// Invariants:
//   - Each row records the position (stream sequence, index) of the last
//     event applied to it; an event at or before that position is skipped, so
//     a redelivered batch is never counted twice.
//   - Per batch: change events are published first (ids derived from the
//     view, row and position, so a retry is dropped by the bus's dedup
//     window), then rows are written, then the batch is acked.
//   - One process folds a view at a time (the folder keeps rows in a cache it
//     owns); running the same view on two nodes is not supported yet.
package views
