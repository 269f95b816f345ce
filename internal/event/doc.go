// Package event defines the Ops event: a CloudEvents 1.0 envelope in structured
// JSON mode, its validation, id generation and the bus subject derived from it.
//
// Invariants: an Event that passed Validate has specversion "1.0", a non-empty
// id, source and type, a bus subject "ev.<type tokens>" that is a valid literal
// NATS subject, and encodes to at most the configured size limit.
package event
