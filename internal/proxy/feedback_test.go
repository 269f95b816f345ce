package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
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
	// The view counts per minute (a tumbling window): 50 errors split
	// across a minute's edge are two counts below 50, and no block.
	if left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute)); left < 15*time.Second {
		time.Sleep(left + 100*time.Millisecond)
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

// TestPolicyKinds: path blocks, maintenance and rate entries written
// through the API apply at the proxy at once and end when cleared.
func TestPolicyKinds(t *testing.T) {
	up, _ := echoUpstream(t, "up")
	r, base := startProxy(t, []config.Route{{Name: "other", Hosts: config.Strings{"other.test"}, Upstreams: config.Strings{up.URL}}, {Name: "site", Upstreams: config.Strings{up.URL}}}, nil)
	api := func(method, path, body string) {
		req, _ := http.NewRequest(method, r.URL+"/api/v1/policy/"+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %v %v", method, path, resp, err)
		}
		resp.Body.Close()
	}
	code := func(host, path string) int {
		resp, _ := get(t, base, host, path)
		return resp.StatusCode
	}
	wait := func(host, path string, want int) {
		t.Helper()
		testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
			if c := code(host, path); c != want {
				return &codeErr{c}
			}
			return nil
		})
	}
	api("PUT", "path/wp-admin", `{"reason":"not a WordPress site"}`)
	wait("x.test", "/wp-admin/setup.php", 403)
	if code("x.test", "/wp-adminx") != 200 || code("x.test", "/") != 200 {
		t.Fatal("path block too wide")
	}
	api("DELETE", "path/wp-admin", "")
	wait("x.test", "/wp-admin/setup.php", 200)

	api("PUT", "maintenance/site", `{"reason":"database upgrade"}`)
	wait("x.test", "/", 503)
	if code("other.test", "/") != 200 {
		t.Fatal("maintenance of one route closed another")
	}
	api("DELETE", "maintenance/site", "")
	wait("x.test", "/", 200)

	api("PUT", "ip/127.0.0.1", `{"action":"rate","rate":1}`)
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		codes := map[int]int{}
		for i := 0; i < 5; i++ {
			codes[code("x.test", "/")]++
		}
		if codes[429] == 0 {
			return fmt.Errorf("no 429 at 1 request/s: %v", codes)
		}
		return nil
	})
}
