package testutil

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/app"
	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/logging"
)

// Running is an app started by StartApp.
type Running struct {
	URL   string
	Token string // the first-run admin token, when the app wrote one
	App   *app.App
	Cfg   *config.Config
	stop  func() error
}

// Stop stops the app (as SIGTERM would) and returns Run's error.
func (r *Running) Stop() error { return r.stop() }

// StartApp runs the app with targets on a loopback port. mod adjusts the
// default config (data_dir is a fresh temp dir unless mod sets one). The app
// stops on test cleanup unless stopped before.
func StartApp(t testing.TB, targets []string, mod func(*config.Config)) *Running {
	t.Helper()
	c := config.Default()
	c.DataDir = t.TempDir()
	c.HTTP.Listen = "127.0.0.1:0"
	if mod != nil {
		mod(&c)
	}
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("test config: %v", errs)
	}
	var w io.Writer = io.Discard
	if os.Getenv("OPS_TEST_LOG") != "" {
		w = os.Stderr
	}
	logs, err := logging.New(w, "text", "debug", nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(&c, logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, targets) }()
	actx, acancel := context.WithTimeout(ctx, 20*time.Second)
	defer acancel()
	addrc := make(chan string, 1)
	go func() {
		if addr, err := a.APIAddr(actx); err == nil {
			addrc <- addr.String()
		}
		close(addrc)
	}()
	var url string
	select {
	case addr, ok := <-addrc:
		if !ok {
			cancel()
			t.Fatalf("app did not start: %v", <-done)
		}
		url = "http://" + addr
	case err := <-done:
		cancel()
		t.Fatalf("app stopped during start: %v", err)
	}
	stopped := false
	var stopErr error
	r := &Running{URL: url, App: a, Cfg: &c}
	r.stop = func() error {
		if stopped {
			return stopErr
		}
		stopped = true
		cancel()
		select {
		case stopErr = <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("app did not stop within 30s")
		}
		return stopErr
	}
	t.Cleanup(func() { _ = r.Stop() })
	CheckFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		select {
		case err := <-done:
			// Run ended while starting: say why, not "connection refused".
			stopped, stopErr = true, err
			t.Fatalf("app stopped during start: %v", err)
		default:
		}
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return &statusErr{resp.StatusCode}
		}
		return nil
	})
	if b, err := os.ReadFile(filepath.Join(c.DataDir, identity.AdminTokenFile)); err == nil {
		r.Token = strings.TrimSpace(string(b))
		Authorize(url, r.Token)
	}
	return r
}

type statusErr struct{ code int }

func (e *statusErr) Error() string { return http.StatusText(e.code) }

// BusOf returns the running app's bus, for tests that use the Go API.
func BusOf(t testing.TB, r *Running) *bus.Bus {
	t.Helper()
	b := r.App.Bus()
	if b == nil {
		t.Fatal("app has no bus")
	}
	return b
}

// Call sends a request with a bearer token ("" for none) and a JSON body
// ("" for none) and returns the status and body.
func Call(t testing.TB, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Metrics is the app's /metrics text, read with the admin token.
func (r *Running) Metrics(t testing.TB) string {
	t.Helper()
	req, _ := http.NewRequest("GET", r.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+r.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}
