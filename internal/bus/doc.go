// Package bus is Ops's connection to NATS JetStream: an embedded server (the
// default, connected in-process) or a client of an external cluster. It owns
// the streams EVENTS (ev.>) and AGG (agg.>), publishes events with
// deduplication, and reads them back.
//
// Storage format: one bus message holds the events of one publish call that
// share a subject (a CloudEvents JSON batch when there are several, a single
// structured-mode event otherwise), so one fsync covers a whole request. An
// event's position is (stream sequence, index in the message).
//
// Invariants:
//   - Publish returns only after JetStream acknowledged every message, which
//     with bus.sync=always means after fsync.
//   - Nats-Msg-Id is the event id for a single event and a hash of the ordered
//     ids for a batch, so an exact retry is dropped by JetStream; an event id
//     seen within the dedup window in a different batch is dropped by the
//     in-memory window (rebuilt from the stream at start).
//   - Lock order: dedup.mu guards the window only and is never held while
//     calling into NATS.
package bus
