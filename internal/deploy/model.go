package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/opsgraph/ops/internal/cqrs"
	"github.com/opsgraph/ops/internal/event"
)

// Statuses of a deployment.
const (
	Started    = "started"
	Succeeded  = "succeeded"
	Failed     = "failed"
	RolledBack = "rolled_back"
)

// HeartbeatType is the event type hosts report with (ev.deploy.heartbeat).
const HeartbeatType = "deploy.heartbeat"

// Deployment is one rollout of a version of a service to an environment.
type Deployment struct {
	ID          string     `json:"id"`
	Service     string     `json:"service"`
	Env         string     `json:"env"`
	Version     string     `json:"version"`
	Status      string     `json:"status"`
	Commit      string     `json:"commit,omitempty"`
	CommitTime  *time.Time `json:"commit_time,omitempty"`
	Hosts       []string   `json:"hosts,omitempty"`
	Region      string     `json:"region,omitempty"`
	Who         string     `json:"who,omitempty"`
	RecordedBy  string     `json:"recorded_by,omitempty"`
	URL         string     `json:"url,omitempty"`
	Description string     `json:"description,omitempty"`
	ConfigHash  string     `json:"config_hash,omitempty"`
	// At is when the deployment was first recorded; Updated when its
	// status last changed (both from the events, not the clock of a read).
	At      time.Time `json:"at"`
	Updated time.Time `json:"updated"`
	// History lists its status changes in order.
	History []Change `json:"history,omitempty"`
}

// Change is one status a deployment took, and when.
type Change struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
}

// final reports whether a status ends a deployment for good.
func final(s string) bool { return s == Failed || s == RolledBack }

// live reports whether a deployment is (or is becoming) what should run.
func (d *Deployment) live() bool { return d.Status == Started || d.Status == Succeeded }

// Record is a request to record a deployment or a new status of one.
type Record struct {
	ID          string     `json:"id"`
	Service     string     `json:"service"`
	Env         string     `json:"env"`
	Version     string     `json:"version"`
	Status      string     `json:"status"`
	Commit      string     `json:"commit"`
	CommitTime  *time.Time `json:"commit_time"`
	Hosts       []string   `json:"hosts"`
	Region      string     `json:"region"`
	Who         string     `json:"who"`
	URL         string     `json:"url"`
	Description string     `json:"description"`
	// Config is the deployment's configuration document (YAML or JSON) as
	// text; ConfigHash names one stored before instead.
	Config     *string `json:"config"`
	ConfigHash string  `json:"config_hash"`
	// At backdates the record (an import of past deployments); the time
	// of the request when empty.
	At *time.Time `json:"at"`
}

// Heartbeat is what a host reports it runs.
type Heartbeat struct {
	Service    string `json:"service"`
	Env        string `json:"env"`
	Host       string `json:"host"`
	Version    string `json:"version"`
	ConfigHash string `json:"config_hash,omitempty"`
	// Every is how often this host reports, in seconds (drift counts its
	// missed heartbeats by it); deploy.heartbeat_interval when 0.
	Every float64 `json:"every,omitempty"`
}

// FieldError is bad input, naming the field.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	idRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_:@-]{0,127}$`)
	hostRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$`)
)

// text checks a free-text field: printable, bounded.
func text(field, s string, max int) error {
	if len(s) > max {
		return &FieldError{field, fmt.Sprintf("at most %d bytes, got %d", max, len(s))}
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return &FieldError{field, fmt.Sprintf("holds a control character %q", r)}
		}
	}
	return nil
}

// canonName lowercases a service or environment name and checks it: it
// is one subject token of the aggregate's subject.
func canonName(field, s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", &FieldError{field, "required"}
	}
	if !nameRE.MatchString(s) {
		return "", &FieldError{field, fmt.Sprintf("want lowercase letters, digits, - and _ (up to 63), got %q", s)}
	}
	return s, nil
}

// check validates and canonicalises a record in place (the config text
// itself is checked by the module, which stores it).
func (r *Record) check() error {
	var err error
	if r.Service, err = canonName("service", r.Service); err != nil {
		return err
	}
	if r.Env, err = canonName("env", r.Env); err != nil {
		return err
	}
	r.Version = strings.TrimSpace(r.Version)
	if r.Version == "" {
		return &FieldError{"version", "required"}
	}
	if r.Status == "" {
		r.Status = Succeeded
	}
	switch r.Status {
	case Started, Succeeded, Failed, RolledBack:
	default:
		return &FieldError{"status", fmt.Sprintf("want started, succeeded, failed or rolled_back, got %q", r.Status)}
	}
	if r.ID != "" && !idRE.MatchString(r.ID) {
		return &FieldError{"id", fmt.Sprintf("want letters, digits, -, _, : and @ (up to 128), got %q", r.ID)}
	}
	if r.ConfigHash != "" && !hashRE.MatchString(r.ConfigHash) {
		return &FieldError{"config_hash", "want the SHA-256 of the config as 64 lowercase hex digits"}
	}
	if r.ConfigHash != "" && r.Config != nil {
		return &FieldError{"config", "give config or config_hash, not both"}
	}
	if len(r.Hosts) > 10000 {
		return &FieldError{"hosts", fmt.Sprintf("at most 10000, got %d", len(r.Hosts))}
	}
	for i, h := range r.Hosts {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !hostRE.MatchString(h) {
			return &FieldError{fmt.Sprintf("hosts[%d]", i), fmt.Sprintf("want a host name or address, got %q", h)}
		}
		r.Hosts[i] = h
	}
	slices.Sort(r.Hosts)
	r.Hosts = slices.Compact(r.Hosts)
	for _, f := range []struct {
		name, v string
		max     int
	}{{"version", r.Version, 128}, {"commit", r.Commit, 128}, {"region", r.Region, 64}, {"who", r.Who, 256},
		{"url", r.URL, 2048}, {"description", r.Description, 4096}} {
		if err := text(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	return nil
}

// check validates and canonicalises a heartbeat in place.
func (h *Heartbeat) check() error {
	var err error
	if h.Service, err = canonName("service", h.Service); err != nil {
		return err
	}
	if h.Env, err = canonName("env", h.Env); err != nil {
		return err
	}
	h.Host = strings.ToLower(strings.TrimSuffix(h.Host, "."))
	if !hostRE.MatchString(h.Host) {
		return &FieldError{"host", fmt.Sprintf("want a host name or address, got %q", h.Host)}
	}
	h.Version = strings.TrimSpace(h.Version)
	if h.Version == "" {
		return &FieldError{"version", "required"}
	}
	if err := text("version", h.Version, 128); err != nil {
		return err
	}
	if h.ConfigHash != "" && !hashRE.MatchString(h.ConfigHash) {
		return &FieldError{"config_hash", "want the SHA-256 of the config as 64 lowercase hex digits"}
	}
	if h.Every < 0 || h.Every > 86400 {
		return &FieldError{"every", fmt.Sprintf("want 0 to 86400 seconds, got %v", h.Every)}
	}
	return nil
}

// aggType and aggID place a service's environment on the AGG stream:
// agg.deploy.<service>.<env>, so agg.deploy.api.> is every environment of
// api.
func aggType(service string) string { return "deploy." + service }

// eventType is the aggregate event of a status.
func eventType(status string) string { return "deploy." + status }

// state is one service/environment's deployments, folded from its
// aggregate events.
type state struct {
	order []string
	byID  map[string]*Deployment
}

// fold applies one aggregate event to the state.
func (s *state) fold(e event.Event) error {
	status, ok := strings.CutPrefix(e.Type, "deploy.")
	if !ok {
		return fmt.Errorf("event %s: type %q is not a deployment's", e.ID, e.Type)
	}
	var d Deployment
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return fmt.Errorf("event %s: %w", e.ID, err)
	}
	if s.byID == nil {
		s.byID = map[string]*Deployment{}
	}
	cur, ok := s.byID[d.ID]
	if !ok {
		d.Status, d.At, d.Updated = status, e.Time, e.Time
		d.History = []Change{{Status: status, At: e.Time, By: d.RecordedBy}}
		s.byID[d.ID] = &d
		s.order = append(s.order, d.ID)
		return nil
	}
	cur.Status, cur.Updated = status, e.Time
	cur.History = append(cur.History, Change{Status: status, At: e.Time, By: d.RecordedBy})
	return nil
}

// ErrRejected wraps a record the deployment's state refuses.
var ErrRejected = errors.New("rejected")

// decide turns a record into the event it adds, or none when the
// deployment already has that status (a retried record).
func (s *state) decide(r Record, by string, now time.Time) ([]event.Event, error) {
	cur := s.byID[r.ID]
	if cur != nil {
		switch {
		case cur.Version != r.Version:
			return nil, &cqrs.RejectedError{Msg: fmt.Sprintf("version: deployment %s is of version %q, not %q", r.ID, cur.Version, r.Version)}
		case cur.Status == r.Status:
			return nil, nil
		case final(cur.Status):
			return nil, &cqrs.RejectedError{Msg: fmt.Sprintf("status: deployment %s is %s already; record a new deployment", r.ID, cur.Status)}
		case r.Status == Started:
			return nil, &cqrs.RejectedError{Msg: fmt.Sprintf("status: deployment %s is %s; it cannot start again", r.ID, cur.Status)}
		}
	} else if r.Status == RolledBack {
		return nil, &cqrs.RejectedError{Msg: fmt.Sprintf("status: no deployment %s to roll back (give the id of a recorded one)", r.ID)}
	}
	d := Deployment{ID: r.ID, Service: r.Service, Env: r.Env, Version: r.Version, RecordedBy: by}
	if cur == nil {
		d.Commit, d.CommitTime, d.Hosts, d.Region, d.Who = r.Commit, r.CommitTime, r.Hosts, r.Region, r.Who
		d.URL, d.Description, d.ConfigHash = r.URL, r.Description, r.ConfigHash
		if d.Who == "" {
			d.Who = by
		}
	}
	at := now
	if r.At != nil {
		at = r.At.UTC()
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	e := event.NewJSON("/ops/deploy", eventType(r.Status), b)
	e.Time = at
	return []event.Event{e}, nil
}
