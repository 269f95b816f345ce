// Package cqrs stores event-sourced aggregates on the AGG stream and runs
// commands against them with optimistic concurrency.
//
// An aggregate's events live on agg.<type>.<id>. An append names the
// version it expects (the number of events so far); the bus enforces it
// atomically with Nats-Expected-Last-Subject-Sequence, so of two concurrent
// appends at the same version exactly one is stored and the other gets a
// ConflictError with the current version. One append is one bus message,
// however many events it holds, so it is stored whole or not at all.
//
// AGG is sourced into EVENTS as ev.agg.<type>.<id>, so processors and views
// (a `latest` view is the usual read model) consume aggregate events like
// any others. Commands read the aggregate's own history, not a view, so a
// check never sees stale state.
package cqrs
