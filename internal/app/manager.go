package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Module is a running part of Ops. Run calls ready once the module serves,
// then blocks until ctx is cancelled and its in-flight work is drained. A
// Run that returns early, with or without an error, stops the whole app.
type Module interface {
	Run(ctx context.Context, ready func()) error
}

// Def declares a module to the manager.
type Def struct {
	Name string
	Deps []string
	// Enabled says whether "all" includes the module; nil means always.
	Enabled func() bool
	// Requires, when set, is checked when the module is named as a target
	// itself (not pulled in by "all" or as a dependency): an error names
	// the config key the module cannot run without, and nothing starts.
	Requires func(targets []string) error
	// New constructs the module; it runs after the dependencies are ready.
	// A nil New declares a group (like "all") with no module of its own.
	New func() (Module, error)
}

// State is a module's life-cycle state.
type State string

const (
	StateNew      State = "new"
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateStopped  State = "stopped"
	StateFailed   State = "failed"
)

// Status is one module's state, for /readyz and /api/v1/status.
type Status struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	Error string `json:"error,omitempty"`
}

// Manager starts and stops modules.
type Manager struct {
	log  *slog.Logger
	defs map[string]Def
	// StopTimeout bounds how long a module may take to stop; past it the
	// module is recorded as failed and the rest stop anyway (a module stuck
	// in shutdown must not keep the process from exiting).
	StopTimeout time.Duration

	mu     sync.Mutex
	order  []string
	states map[string]*Status
}

// NewManager returns a manager for defs.
func NewManager(log *slog.Logger, defs []Def) (*Manager, error) {
	m := &Manager{log: log, defs: map[string]Def{}, states: map[string]*Status{}, StopTimeout: 30 * time.Second}
	for _, d := range defs {
		if _, dup := m.defs[d.Name]; dup {
			return nil, fmt.Errorf("module %q registered twice", d.Name)
		}
		m.defs[d.Name] = d
	}
	for _, d := range defs {
		for _, dep := range d.Deps {
			if _, ok := m.defs[dep]; !ok {
				return nil, fmt.Errorf("module %q depends on unknown module %q", d.Name, dep)
			}
		}
	}
	return m, nil
}

// Names lists the registered modules.
func (m *Manager) Names() []string {
	out := make([]string, 0, len(m.defs))
	for n := range m.defs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Resolve expands targets (and "all") to every module they need, in start
// order: dependencies first, ties broken by name so the order is stable.
func (m *Manager) Resolve(targets []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, path []string) error
	visit = func(n string, path []string) error {
		d, ok := m.defs[n]
		if !ok {
			return fmt.Errorf("unknown target %q (known: %s)", n, strings.Join(m.Names(), ", "))
		}
		switch state[n] {
		case 1:
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(path, n), " -> "))
		case 2:
			return nil
		}
		state[n] = 1
		deps := slices.Clone(d.Deps)
		sort.Strings(deps)
		for _, dep := range deps {
			// A dependency that is not configured is left out (a module
			// that depends on it gets nil, as when it is off).
			if dd := m.defs[dep]; dd.Enabled != nil && !dd.Enabled() {
				continue
			}
			if err := visit(dep, append(path, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, t := range targets {
		t = strings.TrimSpace(t)
		if err := visit(t, nil); err != nil {
			return nil, err
		}
		if d := m.defs[t]; d.Requires != nil {
			if err := d.Requires(targets); err != nil {
				return nil, fmt.Errorf("--target=%s: %w", t, err)
			}
		}
	}
	return order, nil
}

type running struct {
	name   string
	cancel context.CancelFunc
	done   chan error
}

// Run starts the targets and blocks until ctx is cancelled or a module
// stops on its own; then it stops every started module in reverse order.
func (m *Manager) Run(ctx context.Context, targets []string) error {
	order, err := m.Resolve(targets)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.order = nil
	for _, n := range order {
		if m.defs[n].New != nil {
			m.order = append(m.order, n)
			m.states[n] = &Status{Name: n, State: StateNew}
		}
	}
	m.mu.Unlock()

	var started []*running
	exited := make(chan string, len(order))
	var firstErr error
	for _, n := range order {
		d := m.defs[n]
		if d.New == nil {
			continue
		}
		r, err := m.start(ctx, d, exited)
		if err != nil {
			firstErr = err
			break
		}
		started = append(started, r)
	}
	if firstErr == nil {
		select {
		case <-ctx.Done():
			m.log.Info("stopping", "reason", "signal")
		case n := <-exited:
			firstErr = m.exitError(n, started)
		}
	}
	for i := len(started) - 1; i >= 0; i-- {
		r := started[i]
		m.setState(r.name, StateStopping, nil)
		r.cancel()
		var err error
		select {
		case err = <-r.done:
		case <-time.After(m.StopTimeout):
			err = fmt.Errorf("did not stop within %s", m.StopTimeout)
			m.log.Error("module did not stop in time; stopping the others", "target", r.name, "waited", m.StopTimeout)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			m.setState(r.name, StateFailed, err)
			if firstErr == nil {
				firstErr = fmt.Errorf("module %s: %w", r.name, err)
			}
			continue
		}
		m.setState(r.name, StateStopped, nil)
		m.log.Debug("module stopped", "target", r.name)
	}
	return firstErr
}

func (m *Manager) exitError(n string, started []*running) error {
	for _, r := range started {
		if r.name != n {
			continue
		}
		err := <-r.done
		r.done <- err // keep it for the stop loop
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		m.setState(n, StateFailed, err)
		return fmt.Errorf("module %s: %w", n, err)
	}
	return fmt.Errorf("module %s exited", n)
}

func (m *Manager) start(ctx context.Context, d Def, exited chan<- string) (*running, error) {
	m.setState(d.Name, StateStarting, nil)
	t0 := time.Now()
	mod, err := d.New()
	if err != nil {
		m.setState(d.Name, StateFailed, err)
		return nil, fmt.Errorf("module %s: %w", d.Name, err)
	}
	// Modules outlive a cancelled parent only as long as the stop loop lets
	// them: each gets its own context so stop order is the manager's choice.
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{name: d.Name, cancel: cancel, done: make(chan error, 1)}
	readyc, finished := make(chan struct{}), make(chan struct{})
	var once sync.Once
	go func() {
		err := mod.Run(mctx, func() { once.Do(func() { close(readyc) }) })
		r.done <- err
		close(finished)
		exited <- d.Name
	}()
	select {
	case <-readyc:
		m.setState(d.Name, StateRunning, nil)
		m.log.Debug("module running", "target", d.Name, "took", time.Since(t0))
		return r, nil
	case <-finished:
		err := <-r.done
		if err == nil {
			err = errors.New("stopped before it was ready")
		}
		cancel()
		m.setState(d.Name, StateFailed, err)
		return nil, fmt.Errorf("module %s: %w", d.Name, err)
	case <-ctx.Done():
		cancel()
		<-r.done //nolint:errcheck // cancelled during start: its error is the cancellation
		m.setState(d.Name, StateStopped, nil)
		return nil, ctx.Err()
	}
}

func (m *Manager) setState(n string, s State, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.states[n]
	if !ok {
		st = &Status{Name: n}
		m.states[n] = st
	}
	st.State = s
	if err != nil {
		st.Error = err.Error()
	}
}

// Statuses returns each module of the current run, in start order.
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.order))
	for _, n := range m.order {
		out = append(out, *m.states[n])
	}
	return out
}

// Ready reports whether every module of the run is running.
func (m *Manager) Ready() bool {
	st := m.Statuses()
	if len(st) == 0 {
		return false
	}
	for _, s := range st {
		if s.State != StateRunning {
			return false
		}
	}
	return true
}
