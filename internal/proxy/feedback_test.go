package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestFeedbackLoop runs examples/proxy-abuse.yaml: 50 client errors from
// one address within a minute, counted by a view over the proxy's own
// events, block that address at the proxy.
func TestFeedbackLoop(t *testing.T) {
	raw, err := os.ReadFile("../../examples/proxy-abuse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(up.Close)
	routes := ex.Proxy.Routes
	routes[0].Upstreams = config.Strings{up.URL}
	_, base := startProxy(t, routes, func(c *config.Config) { c.Views, c.Processors = ex.Views, ex.Processors })
	status := func(path string) int {
		resp, err := testutil.Anonymous.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 49; i++ {
		if c := status("/wp-login.php"); c != 404 {
			t.Fatalf("probe %d: %d", i, c)
		}
	}
	time.Sleep(500 * time.Millisecond) // the graph has seen 49: no block
	if c := status("/"); c != 200 {
		t.Fatalf("blocked below the threshold: %d", c)
	}
	status("/wp-admin") // the 50th
	crossed := time.Now()
	limit := time.Second
	if raceEnabled {
		limit = 3 * time.Second
	}
	testutil.CheckFor(t, limit, 10*time.Millisecond, func() error {
		if c := status("/"); c != 403 {
			return &codeErr{c}
		}
		return nil
	})
	t.Logf("blocked %v after the threshold was crossed", time.Since(crossed).Round(time.Millisecond))
}

type codeErr struct{ c int }

func (e *codeErr) Error() string { return http.StatusText(e.c) }
