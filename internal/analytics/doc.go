// Package analytics turns tracked page views and custom events into the
// web and product analytics reports people expect from Plausible or
// PostHog: visitors, visits, page views, bounce rate and visit duration,
// over time and broken down by page, source, campaign, device, country and
// custom event properties, with filters and a comparison period.
//
// The module folds ev.track.* into an in-memory columnar store (store.go):
// strings are dictionary-encoded once, events are kept per day of their
// time, and visits (sessions: a visitor's events with no gap over the
// session timeout) are built as events arrive. Reports (query.go) scan the
// days of their range; a filter on a dimension is decided once per
// dictionary entry, not per row.
//
// Invariants: the store is rebuilt from the EVENTS stream at start, so it
// holds nothing the bus does not (a restart loses nothing and counts
// nothing twice); an event is folded once (the consumer is ordered and
// reading from a position); bots are left out.
package analytics
