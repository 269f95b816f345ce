package phish

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/reply"
)

// Deps are what the phishing module needs from the app.
type Deps struct {
	Logger  *slog.Logger
	DataDir string
	// Handle mounts a route with the permission it needs.
	Handle func(pattern, perm string, h http.Handler)
}

// Module runs a Checker (feed refreshes) and serves its API:
// GET /api/v1/phish/check?target=<url|domain> and GET /api/v1/phish/feeds.
type Module struct {
	c *Checker
}

// NewModule builds the checker and mounts the API.
func NewModule(cfg config.Phishing, deps Deps) (*Module, error) {
	c, err := New(cfg, deps.DataDir, deps.Logger)
	if err != nil {
		return nil, err
	}
	m := &Module{c: c}
	if deps.Handle != nil {
		deps.Handle("GET /api/v1/phish/check", "phish:read", http.HandlerFunc(m.check))
		deps.Handle("GET /api/v1/phish/feeds", "phish:read", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reply.JSON(w, http.StatusOK, map[string]any{"feeds": c.Feeds()})
		}))
	}
	return m, nil
}

// Checker is the module's checker, for the proxy and the resolver.
func (m *Module) Checker() *Checker { return m.c }

// Run refreshes the feeds until ctx ends.
func (m *Module) Run(ctx context.Context, ready func()) error {
	ready()
	m.c.Run(ctx)
	return nil
}

func (m *Module) check(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("target")
	if target == "" || len(target) > 4096 {
		reply.Error(w, http.StatusBadRequest, "target", "want ?target=<a URL or a domain>, at most 4096 bytes")
		return
	}
	v, err := m.c.Check(target, false)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "target", err.Error())
		return
	}
	reply.JSON(w, http.StatusOK, v)
}
