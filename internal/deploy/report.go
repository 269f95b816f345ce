package deploy

import (
	"slices"
	"sort"
	"time"
)

// Host is what one host of a service runs, as its heartbeats say, and how
// it differs from what should run.
type Host struct {
	Host       string    `json:"host"`
	Version    string    `json:"version,omitempty"`
	ConfigHash string    `json:"config_hash,omitempty"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
	// Drift names each way the host differs: version, config, silent
	// (missed silent_after heartbeats), missing (listed by the deployment,
	// never reported). Empty when it runs what it should.
	Drift []string `json:"drift"`
}

// Service is one service in one environment: what runs, what should, and
// each host.
type Service struct {
	Service string `json:"service"`
	Env     string `json:"env"`
	// Current is the last succeeded deployment; Desired the last started
	// or succeeded one (the same unless a rollout is in progress).
	Current *Deployment `json:"current"`
	Desired *Deployment `json:"desired"`
	Hosts   []Host      `json:"hosts"`
	Drifted int         `json:"drifted"`
}

// brief is a deployment without its status history, for listings.
func brief(d *Deployment) *Deployment {
	if d == nil {
		return nil
	}
	c := *d
	c.History = nil
	return &c
}

// services reports each service/environment matching the filters, with
// its hosts' drift as of now. Called with m.mu held for reading.
func (m *Module) services(service, env string, now time.Time) []Service {
	var out []Service
	for _, k := range m.keys(service, env) {
		s := Service{Service: k.service, Env: k.env, Hosts: []Host{}}
		var want *Deployment
		if st := m.envs[k]; st != nil {
			s.Current, want = brief(st.current()), st.desired()
			s.Desired = brief(want)
		}
		seenHosts := m.hosts[k]
		names := make([]string, 0, len(seenHosts))
		for h := range seenHosts {
			names = append(names, h)
		}
		if want != nil {
			names = append(names, want.Hosts...)
		}
		sort.Strings(names)
		names = slices.Compact(names)
		for _, name := range names {
			h := Host{Host: name, Drift: []string{}}
			hb := seenHosts[name]
			if hb == nil {
				h.Drift = append(h.Drift, "missing")
			} else {
				if now.Sub(hb.at) > m.cfg.ForgetHostsAfter.D() {
					continue
				}
				h.Version, h.ConfigHash, h.LastSeen = hb.Version, hb.ConfigHash, hb.at
				if want != nil && hb.Version != want.Version {
					h.Drift = append(h.Drift, "version")
				}
				if want != nil && want.ConfigHash != "" && hb.ConfigHash != want.ConfigHash {
					h.Drift = append(h.Drift, "config")
				}
				every := m.cfg.HeartbeatInterval.D()
				if hb.Every > 0 {
					every = time.Duration(hb.Every * float64(time.Second))
				}
				if now.Sub(hb.at) > time.Duration(m.cfg.SilentAfter)*every {
					h.Drift = append(h.Drift, "silent")
				}
			}
			if len(h.Drift) > 0 {
				s.Drifted++
			}
			s.Hosts = append(s.Hosts, h)
		}
		out = append(out, s)
	}
	return out
}

// list returns deployments matching the filters, newest first (by the
// time first recorded), at most limit. Called with m.mu held for reading.
func (m *Module) list(service, env, status string, from, to time.Time, limit int) []*Deployment {
	var out []*Deployment
	for _, k := range m.keys(service, env) {
		st := m.envs[k]
		if st == nil {
			continue
		}
		for _, id := range st.order {
			d := st.byID[id]
			if (status == "" || d.Status == status) && !d.At.Before(from) && d.At.Before(to) {
				out = append(out, d)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// DORA are the four key metrics of one service/environment (or all) over
// a period, as the DORA research defines them, from what was recorded.
type DORA struct {
	Service string    `json:"service,omitempty"`
	Env     string    `json:"env,omitempty"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	// Deployments are the deployments recorded in the period, by final
	// status; Frequency is succeeded ones per day.
	Deployments map[string]int `json:"deployments"`
	Frequency   float64        `json:"deployment_frequency_per_day"`
	// LeadTime is the median time from commit to a succeeded deployment,
	// in seconds, over deployments that gave commit_time; null without.
	LeadTime *float64 `json:"lead_time_seconds"`
	// ChangeFailureRate is the share of finished deployments that failed
	// or were rolled back, in percent; null when none finished.
	ChangeFailureRate *float64 `json:"change_failure_rate"`
	// TimeToRestore is the median time from a failed or rolled-back
	// deployment's start to service restored (the rollback itself, or the
	// next succeeded deployment), in seconds; null without failures.
	TimeToRestore *float64 `json:"time_to_restore_seconds"`
	Failures      int      `json:"failures"`
}

// dora computes the figures over [from, to). Called with m.mu held.
func (m *Module) dora(service, env string, from, to time.Time) DORA {
	out := DORA{Service: service, Env: env, From: from, To: to, Deployments: map[string]int{}}
	var lead, restore []float64
	finished, failed := 0, 0
	for _, k := range m.keys(service, env) {
		st := m.envs[k]
		if st == nil {
			continue
		}
		for i, id := range st.order {
			d := st.byID[id]
			if d.At.Before(from) || !d.At.Before(to) {
				continue
			}
			out.Deployments[d.Status]++
			switch d.Status {
			case Succeeded:
				finished++
				if d.CommitTime != nil {
					if at := d.statusTime(Succeeded); !at.IsZero() && at.After(*d.CommitTime) {
						lead = append(lead, at.Sub(*d.CommitTime).Seconds())
					}
				}
			case Failed, RolledBack:
				finished++
				failed++
				if t, ok := st.restored(i); ok {
					restore = append(restore, t.Sub(d.At).Seconds())
				}
			}
		}
	}
	if days := to.Sub(from).Hours() / 24; days > 0 {
		out.Frequency = float64(out.Deployments[Succeeded]) / days
	}
	if finished > 0 {
		r := 100 * float64(failed) / float64(finished)
		out.ChangeFailureRate = &r
	}
	out.Failures = failed
	out.LeadTime, out.TimeToRestore = median(lead), median(restore)
	return out
}

// statusTime is when the deployment took status s, zero if never.
func (d *Deployment) statusTime(s string) time.Time {
	for _, c := range d.History {
		if c.Status == s {
			return c.At
		}
	}
	return time.Time{}
}

// restored is when the failure of the i-th deployment ended: the rollback
// itself, or the next deployment that succeeded, whichever came first.
func (s *state) restored(i int) (time.Time, bool) {
	d := s.byID[s.order[i]]
	end := time.Time{}
	if d.Status == RolledBack {
		end = d.statusTime(RolledBack)
	}
	for _, id := range s.order[i+1:] {
		n := s.byID[id]
		if at := n.statusTime(Succeeded); !at.IsZero() && (end.IsZero() || at.Before(end)) {
			end = at
			break
		}
	}
	return end, !end.IsZero()
}

func median(xs []float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	slices.Sort(xs)
	v := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		v = (xs[len(xs)/2-1] + v) / 2
	}
	return &v
}

// Services is what runs per service and environment (one service, or all
// for ""), with each host's drift as of now; for the chat's /deploys and
// /drift.
func (m *Module) Services(service string) []Service {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.services(service, "", time.Now())
}
