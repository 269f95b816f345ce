package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
)

type open struct{}

func (open) Require(_ string, h http.Handler) http.Handler { return h }
func (open) Allowed(*http.Request, string) bool            { return true }

// A route that is not mounted yet while modules start (the collector's
// /v1/batch mounts after the API listens) answers 503 with Retry-After,
// which tracking SDKs retry, and not 404, which they drop with the
// events in it. Once every module runs, an unknown path is a 404.
func TestUnmountedRouteWhileStartingIs503(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{Config: config.Default().Bus, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var ready atomic.Bool
	cfg := config.Default().HTTP
	cfg.Listen = "127.0.0.1:0"
	m, err := api.New(cfg, api.Deps{Bus: b, Logger: slog.New(slog.DiscardHandler), Auth: open{},
		Ready: func() (bool, any) { return ready.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, func() {}) }()
	for m.Addr() == nil {
		time.Sleep(time.Millisecond)
	}
	base := "http://" + m.Addr().String()
	try := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(`{"batch":[]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
	}
	for _, path := range []string{"/v1/batch", "/api/v1/deployments"} {
		code, retry, body := try(path)
		if code != http.StatusServiceUnavailable || retry == "" || !strings.Contains(body, "starting") {
			t.Errorf("POST %s while starting: %d Retry-After %q %s; want 503 with Retry-After", path, code, retry, body)
		}
	}
	ready.Store(true)
	for _, path := range []string{"/v1/batch", "/api/v1/deployments"} {
		if code, _, body := try(path); code != http.StatusNotFound {
			t.Errorf("POST %s once running: %d %s; want 404", path, code, body)
		}
	}
	if code, _, body := try("/api/v1/nothing"); !strings.Contains(body, `"path"`) {
		t.Errorf("unknown API route: %d %s; want a JSON error naming the path", code, body)
	}
	cancel()
	<-done
}
