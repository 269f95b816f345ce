// Package proxy is the edge: a reverse proxy in front of the product's
// domain that tracks every request as an ev.proxy.request event, serves
// Ops's first-party endpoints under /_ops/ on every host, authenticates
// (identity), enforces ACLs and rate limits, and takes policy from the
// POLICY bucket that the analytics side writes.
//
// Invariants: a request is never held up by tracking (events go through a
// bounded queue; when the bus is away they spool to disk and are sent when
// it returns, with their ids, so the bus stores each once); headers that
// carry identity upstream are always removed from client requests before
// the proxy sets them; the route table is swapped whole on reload, so a
// request sees one consistent table and open connections are not dropped.
package proxy
