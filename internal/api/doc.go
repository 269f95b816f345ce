// Package api is the main HTTP listener: health, readiness, Ops's own
// metrics, the event API, stream info and run-time log levels, and the mount
// point for other modules' handlers.
//
// Invariants: a write answers 2xx only after the bus acknowledged every
// event in it; errors are JSON {"error", "field"} with the status that fits
// (400 bad input, 413 too large, 415 wrong content type, 503 bus down);
// shutdown stops accepting, ends live streams, then drains requests.
package api
