package bus

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsgraph/ops/internal/config"
)

// Deps are what the bus module needs from the app.
type Deps struct {
	DataDir  string
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Module runs the bus for the module manager.
type Module struct {
	cfg  config.Bus
	deps Deps
	bus  atomic.Pointer[Bus]
}

// New returns the bus module; the bus opens when it runs.
func New(cfg config.Bus, deps Deps) (*Module, error) {
	return &Module{cfg: cfg, deps: deps}, nil
}

// Bus is the open bus; nil before the module is ready.
func (m *Module) Bus() *Bus { return m.bus.Load() }

// Run opens the bus, reports ready, and closes it when ctx ends. It fails if
// the embedded server dies.
func (m *Module) Run(ctx context.Context, ready func()) error {
	b, err := Open(ctx, Options{Config: m.cfg, DataDir: m.deps.DataDir, Logger: m.deps.Logger, Registry: m.deps.Registry})
	if err != nil {
		return err
	}
	m.bus.Store(b)
	ready()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return b.Close()
		case <-t.C:
			// The dedup window lets ids go even when nothing is published
			// (its memory with them).
			b.dedup.expire()
			if b.srv == nil {
				continue
			}
			if !b.srv.Running() {
				b.Close()
				return errors.New("embedded NATS server stopped")
			}
			b.restoreJetStream()
		}
	}
}
