package app

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a module that logs its life cycle into a shared journal.
type recorder struct {
	name    string
	journal *journal
	failRun error         // returned by Run after ready
	failNew bool          // New fails
	noReady bool          // returns failRun before ready
	after   time.Duration // fail this long after ready
}

type journal struct {
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	j.lines = append(j.lines, s)
	j.mu.Unlock()
}

func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return strings.Join(j.lines, " ")
}

func (r *recorder) Run(ctx context.Context, ready func()) error {
	if r.noReady {
		r.journal.add("fail:" + r.name)
		return r.failRun
	}
	r.journal.add("start:" + r.name)
	ready()
	if r.failRun != nil {
		select {
		case <-time.After(r.after):
			r.journal.add("fail:" + r.name)
			return r.failRun
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	r.journal.add("stop:" + r.name)
	return nil
}

func defsFor(j *journal, mods map[string]*recorder, deps map[string][]string, enabled map[string]bool) []Def {
	var defs []Def
	for name, r := range mods {
		r.name, r.journal = name, j
		d := Def{Name: name, Deps: deps[name]}
		if en, ok := enabled[name]; ok {
			d.Enabled = func() bool { return en }
		}
		d.New = func() (Module, error) {
			if r.failNew {
				return nil, errors.New("cannot construct")
			}
			return r, nil
		}
		defs = append(defs, d)
	}
	return defs
}

func newTestManager(t *testing.T, defs []Def) *Manager {
	t.Helper()
	m, err := NewManager(slog.New(slog.DiscardHandler), defs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStartOrderAndReverseStop(t *testing.T) {
	j := &journal{}
	mods := map[string]*recorder{"bus": {}, "api": {}, "views": {}, "proxy": {}}
	deps := map[string][]string{"api": {"bus"}, "views": {"bus"}, "proxy": {"api", "views"}}
	defs := append(defsFor(j, mods, deps, map[string]bool{"proxy": false}), Def{Name: "all", Deps: []string{"bus", "api", "views", "proxy"}})
	m := newTestManager(t, defs)

	order, err := m.Resolve([]string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "bus,api,views,all" {
		t.Fatalf("all = %s (proxy is disabled)", got)
	}
	order, _ = m.Resolve([]string{"proxy"})
	if got := strings.Join(order, ","); got != "bus,api,views,proxy" {
		t.Fatalf("an explicit target runs even when disabled for all: %s", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx, []string{"api", "views"}) }()
	deadline := time.Now().Add(5 * time.Second)
	for !m.Ready() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !m.Ready() {
		t.Fatalf("not ready: %+v", m.Statuses())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := "start:bus start:api start:views stop:views stop:api stop:bus"
	if j.String() != want {
		t.Fatalf("journal:\n got %s\nwant %s", j, want)
	}
	for _, s := range m.Statuses() {
		if s.State != StateStopped {
			t.Fatalf("%s is %s after stop", s.Name, s.State)
		}
	}
}

func TestFailureStopsEverything(t *testing.T) {
	j := &journal{}
	boom := errors.New("boom")
	mods := map[string]*recorder{"bus": {}, "api": {failRun: boom, after: 50 * time.Millisecond}, "views": {}}
	m := newTestManager(t, defsFor(j, mods, map[string][]string{"api": {"bus"}, "views": {"api"}}, nil))
	err := m.Run(context.Background(), []string{"views"})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "module api") {
		t.Fatalf("err = %v", err)
	}
	if want := "start:bus start:api start:views fail:api stop:views stop:bus"; j.String() != want {
		t.Fatalf("journal:\n got %s\nwant %s", j, want)
	}
	var api Status
	for _, s := range m.Statuses() {
		if s.Name == "api" {
			api = s
		}
	}
	if api.State != StateFailed || api.Error == "" {
		t.Fatalf("api status %+v", api)
	}
}

func TestFailureDuringStart(t *testing.T) {
	for name, bad := range map[string]*recorder{
		"constructor": {failNew: true},
		"run":         {noReady: true, failRun: errors.New("port in use")},
	} {
		t.Run(name, func(t *testing.T) {
			j := &journal{}
			mods := map[string]*recorder{"bus": {}, "api": bad, "views": {}}
			m := newTestManager(t, defsFor(j, mods, map[string][]string{"api": {"bus"}, "views": {"api"}}, nil))
			if err := m.Run(context.Background(), []string{"views"}); err == nil || !strings.Contains(err.Error(), "module api") {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(j.String(), "start:views") || !strings.HasSuffix(j.String(), "stop:bus") {
				t.Fatalf("journal: %s", j)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	j := &journal{}
	m := newTestManager(t, defsFor(j, map[string]*recorder{"a": {}, "b": {}}, map[string][]string{"a": {"b"}, "b": {"a"}}, nil))
	if _, err := m.Resolve([]string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("cycle: %v", err)
	}
	if _, err := m.Resolve([]string{"nope"}); err == nil || !strings.Contains(err.Error(), `unknown target "nope"`) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := NewManager(slog.New(slog.DiscardHandler), []Def{{Name: "x", Deps: []string{"y"}}}); err == nil {
		t.Fatal("unknown dependency accepted")
	}
}

// stuck is a module that does not stop when asked.
type stuck struct{ release chan struct{} }

func (s stuck) Run(ctx context.Context, ready func()) error {
	ready()
	<-s.release
	return nil
}

// TestStopDeadline: a module that does not stop within StopTimeout is
// recorded as failed and the others stop anyway.
func TestStopDeadline(t *testing.T) {
	j := &journal{}
	rel := make(chan struct{})
	defer close(rel)
	defs := append(defsFor(j, map[string]*recorder{"bus": {}}, nil, nil),
		Def{Name: "stuck", Deps: []string{"bus"}, New: func() (Module, error) { return stuck{rel}, nil }})
	m := newTestManager(t, defs)
	m.StopTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, []string{"stuck"}) }()
	for !m.Ready() {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stuck") || !strings.Contains(err.Error(), "did not stop") {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stuck module kept the manager from returning")
	}
	if !strings.Contains(j.String(), "stop:bus") {
		t.Fatalf("the other modules did not stop: %s", j)
	}
}
