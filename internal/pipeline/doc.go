// Package pipeline runs the processors of the event graph. Each processor is
// a durable pull consumer on EVENTS: it fetches a batch of bus messages,
// runs where/map/to over every event, publishes the outputs (and dead
// letters) with message ids derived from the processor and the input
// message, and acks the inputs only after the outputs were acknowledged.
//
// Invariants: an input is acked only after all its outputs are stored; an
// output's Nats-Msg-Id and event id depend only on (processor, input), so a
// redelivered input republishes the same ids and the bus drops them; no
// event is dropped silently: a failing where/map/to goes to
// ev.deadletter.<processor> with the error and the original event.
package pipeline
