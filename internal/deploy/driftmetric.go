package deploy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// driftReasons are the ways a host can drift, each a series value.
var driftReasons = []string{"version", "config", "silent", "missing"}

var driftDesc = prometheus.NewDesc("ops_deploy_drift_hosts",
	"Hosts of a service and environment that drift, by reason (version, config, silent, missing); 0 when none does. Alert on it: ops_deploy_drift_hosts > 0.",
	[]string{"service", "env", "reason"}, nil)

// driftCollector computes drift when scraped, so a host that went silent
// shows without an event having to say so.
type driftCollector struct{ m *Module }

func (c driftCollector) Describe(ch chan<- *prometheus.Desc) { ch <- driftDesc }

func (c driftCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.RLock()
	ss := c.m.services("", "", time.Now())
	c.m.mu.RUnlock()
	for _, s := range ss {
		n := map[string]int{}
		for _, h := range s.Hosts {
			for _, d := range h.Drift {
				n[d]++
			}
		}
		for _, r := range driftReasons {
			ch <- prometheus.MustNewConstMetric(driftDesc, prometheus.GaugeValue, float64(n[r]), s.Service, s.Env, r)
		}
	}
}
