// Package grafana generates Grafana provisioning for Ops: a Prometheus data
// source pointing at Ops's /prometheus API, a file dashboard provider, one
// dashboard per windowed view and an "Ops health" dashboard over Ops's own
// metrics. Everything here is a pure function of its inputs; reading views
// from a running Ops or a config file and writing files is the CLI's job.
//
// Invariants:
//   - Every panel query is PromQL that Ops's API accepts once Grafana's
//     variables ($__rate_interval, the key variables) are substituted; the
//     cmd/ops tests run each one against a real Ops.
//   - A view panel evaluated at a window's start shows that window's final
//     value for the row, and nothing for rows the window does not have (see
//     viewExpr for why a plain selector would not).
//   - Output is deterministic: the same views and options give the same
//     bytes, so provisioning can be re-run and diffed.
package grafana
