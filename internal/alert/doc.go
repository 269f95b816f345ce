// Package alert evaluates alerting and recording rules over the embedded
// TSDB and records every alert's state changes.
//
// Rules are in Prometheus's rule file format and are evaluated by
// Prometheus's own rule manager (prometheus/rules), so `for`,
// `keep_firing_for`, label and annotation templates, and the ALERTS and
// ALERTS_FOR_STATE series behave exactly as in Prometheus; `for` state is
// restored from ALERTS_FOR_STATE after a restart. Groups come from
// alert.rule_files (existing Prometheus rule files, unchanged) and from
// the API (kept in the KV bucket ALERT_RULES).
//
// Each state change of an alert (pending, firing, resolved) is an event
// ev.alert.<state> whose id is derived from the rule, the alert's labels,
// when it became active and the state, so a restart that finds the same
// alert again does not record it twice (within the bus's dedup window).
package alert
