package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/reply"
)

// Deps are what the policy module needs.
type Deps struct {
	Bus    *bus.Bus
	Logger *slog.Logger
	// Handle mounts a route with the permission it needs.
	Handle func(pattern, perm string, h http.Handler)
	// Actor names who made a request, for the entry's By.
	Actor func(*http.Request) string
	// Cleared, when set, hears of an entry an admin cleared (kind and
	// normalised subject): identity lifts its own login throttle too.
	Cleared func(kind, subject string)
}

// Module applies ev.policy.set and ev.policy.clear events to the bucket and
// serves /api/v1/policy.
type Module struct {
	deps  Deps
	log   *slog.Logger
	store *Store
}

// Change is the data of ev.policy.set and ev.policy.clear: one of user or
// ip, and for set an action, a reason and how long it lasts.
type Change struct {
	User        string  `json:"user,omitempty"`
	IP          string  `json:"ip,omitempty"`
	Path        string  `json:"path,omitempty"`
	Maintenance string  `json:"maintenance,omitempty"` // a proxy route name, or *
	Domain      string  `json:"domain,omitempty"`      // a DNS name: the resolver blocks it and its subdomains
	Browse      string  `json:"browse,omitempty"`      // [group:]host[/path]: the forward proxy allows or blocks it
	Action      string  `json:"action,omitempty"`
	Rate        float64 `json:"rate,omitempty"` // requests per second, with action rate
	For         string  `json:"for,omitempty"`  // a duration; empty lasts until cleared
	Reason      string  `json:"reason,omitempty"`
}

// Entry turns a change into an entry, naming the field at fault.
func (c Change) Entry(now time.Time) (Entry, error) {
	e := Entry{Action: c.Action, Reason: c.Reason, Set: now.UTC(), Rate: c.Rate}
	n := 0
	for _, set := range []struct {
		kind, subject, action string
	}{{User, c.User, "lock"}, {IP, c.IP, "block"}, {Path, c.Path, "block"}, {Maintenance, c.Maintenance, "on"}, {Domain, c.Domain, "block"}, {Browse, c.Browse, "allow"}} {
		if set.subject != "" {
			n++
			e.Kind, e.Subject = set.kind, set.subject
			if e.Action == "" {
				e.Action = set.action
			}
		}
	}
	switch {
	case n > 1:
		return e, errors.New("user, ip, path, maintenance, domain, browse: set one, not several")
	case n == 0:
		return e, errors.New("user, ip, path, maintenance, domain or browse: one is required")
	}
	allowed := map[string][]string{User: {"lock"}, IP: {"block", "rate"}, Path: {"block"}, Maintenance: {"on"}, Domain: {"block"}, Browse: {"allow", "block"}}[e.Kind]
	if !slices.Contains(allowed, e.Action) {
		return e, fmt.Errorf("action: want %s for %s, got %q", strings.Join(allowed, " or "), e.Kind, e.Action)
	}
	if e.Action == "rate" && (c.Rate <= 0 || c.Rate > 1e6) {
		return e, fmt.Errorf("rate: want requests per second above 0 with action rate, got %v", c.Rate)
	}
	if c.For != "" {
		d, err := config.ParseDuration(c.For)
		if err != nil || d <= 0 {
			return e, fmt.Errorf("for: want a positive duration such as 15m, got %q", c.For)
		}
		e.Until = e.Set.Add(d)
	}
	return e, nil
}

// New opens the bucket and mounts the API.
func New(deps Deps) (*Module, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, deps.Bus)
	if err != nil {
		return nil, err
	}
	m := &Module{deps: deps, log: deps.Logger, store: s}
	deps.Handle("GET /api/v1/policy", "policy:read", http.HandlerFunc(m.list))
	deps.Handle("PUT /api/v1/policy/{kind}/{subject...}", "policy:write", http.HandlerFunc(m.put))
	deps.Handle("DELETE /api/v1/policy/{kind}/{subject...}", "policy:write", http.HandlerFunc(m.clear))
	return m, nil
}

// Run applies policy events until ctx ends.
func (m *Module) Run(ctx context.Context, ready func()) error {
	cfg := jetstream.ConsumerConfig{
		Durable: "policy", Description: "ops policy: ev.policy.* -> POLICY bucket",
		FilterSubjects: []string{"ev.policy.set", "ev.policy.clear"},
		AckPolicy:      jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 1000,
	}
	cons, err := m.deps.Bus.Resume(ctx, bus.EventsStream, cfg)
	if err != nil {
		return fmt.Errorf("policy consumer: %w", err)
	}
	ready()
	bus.Batches{
		Size:     100,
		Consumer: func() jetstream.Consumer { return cons },
		Handle: func(ctx context.Context, _ jetstream.Consumer, msgs []jetstream.Msg) error {
			for _, msg := range msgs {
				if err := m.apply(ctx, msg); err != nil {
					return err
				}
			}
			return nil
		},
		Fail: func(err error) { m.log.Warn("policy apply failed", "err", err) },
		Recover: func(ctx context.Context) {
			if c, err := m.deps.Bus.Resume(ctx, bus.EventsStream, cfg); err == nil {
				cons = c
			}
		},
	}.Run(ctx)
	return nil
}

// apply stores one message's changes and acks it. Applying twice (after a
// crash before the ack) writes the same decision again, which is harmless.
func (m *Module) apply(ctx context.Context, msg jetstream.Msg) error {
	evs, err := event.Decode(msg.Data())
	if err != nil {
		m.log.Warn("policy: undecodable message skipped", "err", err)
		return msg.Ack()
	}
	for _, ev := range evs {
		var c Change
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			m.log.Warn("policy: event data is not a policy change", "id", ev.ID, "err", err)
			continue
		}
		if ev.Type == "policy.clear" {
			kind, sub := User, c.User
			switch {
			case c.IP != "":
				kind, sub = IP, c.IP
			case c.Path != "":
				kind, sub = Path, c.Path
			case c.Maintenance != "":
				kind, sub = Maintenance, c.Maintenance
			case c.Domain != "":
				kind, sub = Domain, c.Domain
			case c.Browse != "":
				kind, sub = Browse, c.Browse
			}
			if err := m.store.Clear(ctx, kind, sub); err != nil && !isBadInput(err) {
				return err
			} else if err != nil {
				m.log.Warn("policy: bad clear event", "id", ev.ID, "err", err)
			}
			continue
		}
		e, err := c.Entry(ev.Time)
		if err != nil {
			m.log.Warn("policy: bad set event", "id", ev.ID, "err", err)
			continue
		}
		e.By = "event " + ev.ID
		if _, err := m.store.Put(ctx, e); err != nil {
			if isBadInput(err) {
				m.log.Warn("policy: bad set event", "id", ev.ID, "err", err)
				continue
			}
			return err
		}
		m.log.Info("policy set", "kind", e.Kind, "subject", e.Subject, "action", e.Action, "until", e.Until, "reason", e.Reason)
	}
	return msg.DoubleAck(ctx)
}

func isBadInput(err error) bool { return errors.Is(err, errKind) || errors.Is(err, errSubject) }

func (m *Module) list(w http.ResponseWriter, r *http.Request) {
	es, err := m.store.List(r.Context())
	if err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	now := time.Now()
	out := make([]map[string]any, 0, len(es))
	for _, e := range es {
		out = append(out, map[string]any{"kind": e.Kind, "subject": e.Subject, "action": e.Action, "rate": e.Rate, "reason": e.Reason,
			"set": e.Set, "until": e.Until, "by": e.By, "active": e.Active(now)})
	}
	reply.JSON(w, http.StatusOK, map[string]any{"entries": out})
}

func (m *Module) put(w http.ResponseWriter, r *http.Request) {
	var c Change
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&c); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", "want JSON {\"action\", \"for\", \"reason\"}: "+err.Error())
		return
	}
	c.User, c.IP, c.Path, c.Maintenance, c.Domain, c.Browse = "", "", "", "", "", ""
	sub := r.PathValue("subject")
	switch r.PathValue("kind") {
	case User:
		c.User = sub
	case IP:
		c.IP = sub
	case Path:
		c.Path = "/" + strings.TrimPrefix(sub, "/")
	case Maintenance:
		c.Maintenance = sub
	case Domain:
		c.Domain = sub
	case Browse:
		c.Browse = sub
	default:
		reply.Error(w, http.StatusBadRequest, "kind", "want user, ip, path, maintenance, domain or browse")
		return
	}
	e, err := c.Entry(time.Now())
	if err != nil {
		reply.Error(w, http.StatusBadRequest, fieldOf(err), err.Error())
		return
	}
	if m.deps.Actor != nil {
		e.By = m.deps.Actor(r)
	}
	if e, err = m.store.Put(r.Context(), e); err != nil {
		if isBadInput(err) {
			reply.Error(w, http.StatusBadRequest, "subject", err.Error())
			return
		}
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	reply.JSON(w, http.StatusOK, e)
}

func (m *Module) clear(w http.ResponseWriter, r *http.Request) {
	sub := r.PathValue("subject")
	if r.PathValue("kind") == Path {
		sub = "/" + strings.TrimPrefix(sub, "/")
	}
	if err := m.store.Clear(r.Context(), r.PathValue("kind"), sub); err != nil {
		if isBadInput(err) {
			reply.Error(w, http.StatusBadRequest, fieldOf(err), err.Error())
			return
		}
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	if m.deps.Cleared != nil {
		if norm, err := Normalize(r.PathValue("kind"), sub); err == nil {
			m.deps.Cleared(r.PathValue("kind"), norm)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// fieldOf is the field an error names: the text before its first colon.
func fieldOf(err error) string {
	if f, _, ok := strings.Cut(err.Error(), ":"); ok {
		return f
	}
	return ""
}
