package grafana

// HealthUID is the UID of the "Ops health" dashboard.
const HealthUID = "ops-health"

type healthTarget struct{ expr, legend string }

type healthPanel struct {
	title, unit, desc string
	targets           []healthTarget
}

// rate is the rate of a counter over Grafana's rate interval.
func rate(metric string) string {
	return "rate(" + metric + "[$__rate_interval])"
}

// healthPanels are over Ops's own metrics, stored every scrape interval
// with job="ops". Every name is one Ops registers (see /metrics); series
// of a module that has nothing to count yet (the proxy without routes,
// remote write without destinations) are absent and their panels empty.
var healthPanels = []healthPanel{
	{"Events stored", "cps", "Events the bus stored per second, and duplicates it dropped (same id within the dedup window).", []healthTarget{
		{`sum(` + rate(`ops_bus_events_published_total{job="ops"}`) + `)`, "stored"},
		{`sum(` + rate(`ops_bus_duplicate_events_total{job="ops"}`) + `)`, "duplicates dropped"},
	}},
	{"Consumer lag", "short", "Bus messages waiting for each view and processor.", []healthTarget{
		{`max by (view) (ops_views_lag{job="ops"})`, "view {{view}}"},
		{`max by (processor) (ops_processor_lag{job="ops"})`, "processor {{processor}}"},
	}},
	{"Errors", "cps", "Failed publishes, events sent to dead letters, late events, API 5xx answers, samples the TSDB refused and remote-write samples given up on, per second.", []healthTarget{
		{`sum(` + rate(`ops_bus_publish_errors_total{job="ops"}`) + `)`, "bus publish"},
		{`sum(` + rate(`ops_processor_errors_total{job="ops"}`) + `)`, "processors (dead letters)"},
		{`sum(` + rate(`ops_views_errors_total{job="ops"}`) + `)`, "views (dead letters)"},
		{`sum(` + rate(`ops_views_late_events_total{job="ops"}`) + `)`, "views: late events"},
		{`sum(` + rate(`ops_http_requests_total{job="ops", code=~"5.."}`) + `)`, "API 5xx"},
		{`sum by (reason) (` + rate(`ops_tsdb_samples_rejected_total{job="ops"}`) + `)`, "TSDB refused: {{reason}}"},
		{`sum by (remote) (` + rate(`ops_tsdb_remote_samples_dropped_total{job="ops"}`) + `)`, "remote write dropped: {{remote}}"},
	}},
	{"API requests by status", "reqps", "Requests to Ops's own HTTP API per second, by status code.", []healthTarget{
		{`sum by (code) (` + rate(`ops_http_requests_total{job="ops"}`) + `)`, "{{code}}"},
	}},
	{"Proxy requests by status", "reqps", "Proxied requests per second, by status code (empty without proxy routes).", []healthTarget{
		{`sum by (code) (` + rate(`ops_proxy_requests_total{job="ops"}`) + `)`, "{{code}}"},
	}},
	{"Proxy latency", "s", "Time from request to the end of the response, over all routes.", []healthTarget{
		{`histogram_quantile(0.5, sum by (le) (` + rate(`ops_proxy_request_seconds_bucket{job="ops"}`) + `))`, "p50"},
		{`histogram_quantile(0.95, sum by (le) (` + rate(`ops_proxy_request_seconds_bucket{job="ops"}`) + `))`, "p95"},
		{`histogram_quantile(0.99, sum by (le) (` + rate(`ops_proxy_request_seconds_bucket{job="ops"}`) + `))`, "p99"},
	}},
	{"Events in, by view and processor", "cps", "Events each view and processor consumed per second.", []healthTarget{
		{`sum by (view) (` + rate(`ops_views_events_in_total{job="ops"}`) + `)`, "view {{view}}"},
		{`sum by (processor) (` + rate(`ops_processor_events_in_total{job="ops"}`) + `)`, "processor {{processor}}"},
	}},
	{"Latency", "s", "Bus publish (until every message is acknowledged) and API request latency.", []healthTarget{
		{`histogram_quantile(0.99, sum by (le) (` + rate(`ops_bus_publish_seconds_bucket{job="ops"}`) + `))`, "bus publish p99"},
		{`histogram_quantile(0.99, sum by (le) (` + rate(`ops_http_request_seconds_bucket{job="ops"}`) + `))`, "API p99"},
	}},
	{"Memory", "bytes", "Resident memory of the process and the Go heap.", []healthTarget{
		{`process_resident_memory_bytes{job="ops"}`, "resident"},
		{`go_memstats_heap_inuse_bytes{job="ops"}`, "Go heap in use"},
		{`go_memstats_next_gc_bytes{job="ops"}`, "next GC at"},
		{`go_memstats_sys_bytes{job="ops"}`, "Go runtime from the OS"},
	}},
	{"CPU", "percentunit", "CPU time used per second: 100% is one core.", []healthTarget{
		{rate(`process_cpu_seconds_total{job="ops"}`), "CPU"},
	}},
	{"Goroutines", "short", "", []healthTarget{
		{`go_goroutines{job="ops"}`, "goroutines"},
	}},
	{"Time-series samples stored", "cps", "Samples the TSDB stored per second, by source (view, otlp, self, remote_write).", []healthTarget{
		{`sum by (source) (` + rate(`ops_tsdb_samples_appended_total{job="ops"}`) + `)`, "{{source}}"},
	}},
	{"Remote-write lag", "s", "Age of the oldest sample waiting for each remote-write destination (empty without tsdb.remote_write).", []healthTarget{
		{`max by (remote) (ops_tsdb_remote_lag_seconds{job="ops"})`, "{{remote}}"},
	}},
}

// HealthDashboard is "Ops health": ingest, lag, errors, requests, latency
// and the process's resources.
func HealthDashboard(ds DatasourceRef) *Dashboard {
	d := &Dashboard{
		UID: HealthUID, Title: "Ops health",
		Description: "Ops's own metrics, stored in its TSDB every scrape interval (job=\"ops\").",
		Tags:        []string{"ops"}, Editable: true, GraphTooltip: 1,
		SchemaVersion: schemaVersion, Version: 1,
		Time:    TimeRange{From: "now-3h", To: "now"},
		Refresh: "30s", Templating: Templating{List: []Variable{}}, Annotations: annotations(ds),
	}
	zero := 0.0
	for i, hp := range healthPanels {
		p := Panel{
			ID: i + 1, Type: "timeseries", Title: hp.title, Description: hp.desc,
			GridPos:    GridPos{H: 8, W: 12, X: (i % 2) * 12, Y: (i / 2) * 8},
			Datasource: ds,
			FieldConfig: FieldConfig{Defaults: FieldDefaults{Unit: hp.unit, Min: &zero,
				Custom: FieldCustom{DrawStyle: "line", LineInterpolation: "linear", LineWidth: 1, FillOpacity: 10,
					ShowPoints: "never", PointSize: 5}}, Overrides: []any{}},
			Options: PanelOptions{Legend: Legend{DisplayMode: "list", Placement: "bottom", ShowLegend: true, Calcs: []string{}},
				Tooltip: Tooltip{Mode: "multi", Sort: "desc"}},
		}
		for j, t := range hp.targets {
			p.Targets = append(p.Targets, Target{RefID: string(rune('A' + j)), Datasource: ds, Expr: t.expr,
				LegendFormat: t.legend, Range: true, EditorMode: "code"})
		}
		d.Panels = append(d.Panels, p)
	}
	return d
}
