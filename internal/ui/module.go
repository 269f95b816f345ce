// Package ui is the web UI: HTML pages rendered here, filled in by a small
// script (web/src/app.js) from the same JSON API that scripts use, and the
// script, styles and icon served from bytes compressed at build time.
package ui

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/opsgraph/ops/internal/identity"
)

// Deps are what the UI needs from the app.
type Deps struct {
	Logger *slog.Logger
	// Handle mounts a route behind a permission (the api module's).
	Handle func(pattern, perm string, h http.Handler)
	// Allowed reports whether the request's identity holds perm.
	Allowed func(r *http.Request, perm string) bool
	// SetupCode is the first-run set-up code, "" when nobody needs one.
	SetupCode func() string
	// Addr waits for the main listener's address.
	Addr func(ctx context.Context) (net.Addr, error)
	// Running reports whether a module runs (to leave out pages of modules
	// that are off).
	Running func(name string) bool
	// Shared checks a shared dashboard link's token: the share's name and
	// site, or an error (analytics.ErrNoShare for a bad or revoked one).
	Shared func(ctx context.Context, token string) (name, site string, err error)
}

// Module serves the UI.
type Module struct {
	deps Deps
	log  *slog.Logger
}

// New mounts the UI routes.
func New(deps Deps) *Module {
	m := &Module{deps: deps, log: deps.Logger}
	m.routes()
	return m
}

// Run prints the first-run set-up link once the listener is up, then waits.
func (m *Module) Run(ctx context.Context, ready func()) error {
	ready()
	if m.deps.SetupCode != nil && m.deps.Addr != nil {
		if code := m.deps.SetupCode(); code != "" {
			if addr, err := m.deps.Addr(ctx); err == nil {
				m.log.Warn("nobody can sign in yet: open this one-time link to create the first admin user",
					"url", "http://"+browsable(addr.String())+"/setup?code="+code)
			}
		}
	}
	<-ctx.Done()
	return nil
}

// browsable turns a listen address into one a browser on this machine can
// open (a wildcard host becomes localhost).
func browsable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func (m *Module) routes() {
	h := m.deps.Handle
	h("GET /{$}", identity.Public, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	}))
	h("GET /ui", identity.Public, http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	h("GET /ui/assets/{name}", identity.Public, http.HandlerFunc(serveAsset))
	for _, p := range pages {
		h("GET "+p.Path, p.Perm, m.page(p))
	}
	if m.deps.Shared != nil {
		h("GET /share/{token}", identity.Public, http.HandlerFunc(m.sharedPage))
	}
}

// can lists the permissions the page's identity holds among those the UI
// asks about, for templates and the script.
func (m *Module) can(r *http.Request) map[string]bool {
	out := map[string]bool{}
	for _, p := range uiPerms {
		if m.deps.Allowed(r, p) {
			out[p] = true
		}
	}
	return out
}

func (m *Module) running(name string) bool {
	return m.deps.Running == nil || m.deps.Running(name)
}

// uiPerms are the permissions pages and their buttons depend on.
var uiPerms = []string{
	"analytics:read", "events:read", "views:read", "views:write", "graph:read", "graph:write",
	"series:read", "policy:read", "policy:write", "users:read", "users:write", "tokens:read",
	"tokens:write", "keys:read", "keys:write", "system:read", "cache:write", "campaigns:write", "analytics:write",
	"deploy:read", "alert:read", "alert:write", "dns:read",
}

func permList(can map[string]bool) string {
	var out []string
	for _, p := range uiPerms {
		if can[p] {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}
