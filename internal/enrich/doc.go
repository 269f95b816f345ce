// Package enrich holds the built-in enrichers a processor names with
// `use: <enricher>` instead of a Bloblang map: useragent, referrer, utm,
// anonymize_ip and session. Each one reads fields of an event in its
// CloudEvents JSON shape (map[string]any with "time", "data" and extension
// attributes at the top level) and writes derived fields back in place,
// following the Segment tracking spec inside data (context.userAgent,
// context.ip, context.page.url, context.page.referrer, userId, anonymousId).
//
// Invariants:
//   - An enricher's output depends only on its input event and, for
//     session, on its SessionStore; enrichers never read the network, files,
//     the clock or random numbers, so a replay produces the same fields.
//   - An absent input field (or one of the wrong JSON type) leaves the event
//     unchanged and is not an error: not every event carries a user agent.
//     The exceptions are written on each enricher: anonymize_ip deletes any
//     value it cannot anonymize, referrer reports a missing referrer as
//     "direct", and session fails on an event without a valid time.
//   - Values written are plain decoded-JSON types (map[string]any, string,
//     float64, bool), so the event stays in the shape Bloblang and
//     json.Marshal expect.
//   - Enrichers are safe for concurrent use.
package enrich
