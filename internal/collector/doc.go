// Package collector is the tracking API: Segment- and RudderStack-compatible
// endpoints (/v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group,
// /v1/alias, /v1/batch, the browser short forms, the pixel and beacon
// endpoints), so existing SDKs send to Ops by changing only their URL.
//
// Invariants: a request is answered 200 only after the bus acknowledged
// every message in it, and all-or-nothing (one invalid message refuses the
// request, naming it); each message becomes one CloudEvent on
// ev.track.<type> whose id is the messageId, so a retried message is stored
// once; write keys are held only as SHA-256 hashes.
package collector
