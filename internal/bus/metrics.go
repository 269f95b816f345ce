package bus

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	events, messages, duplicates, errors prometheus.Counter
	publishSeconds                       prometheus.Histogram
	dedupIDs                             prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ops_bus_events_published_total", Help: "Events stored on the bus (duplicates excluded).",
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ops_bus_messages_published_total", Help: "Bus messages published; one holds a request's events for one subject.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ops_bus_duplicate_events_total", Help: "Events dropped because their id was stored within the dedup window.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ops_bus_publish_errors_total", Help: "Publish calls that failed; none of their events were acknowledged.",
		}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ops_bus_publish_seconds", Help: "Time from publish call to acknowledgement of all its messages.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		dedupIDs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ops_bus_dedup_window_ids", Help: "Event ids held by the in-memory dedup window at start.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.messages, m.duplicates, m.errors, m.publishSeconds, m.dedupIDs)
	}
	return m
}
