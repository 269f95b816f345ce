package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/proxy"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestTopPathsAPI: requests through a real proxy show up, canonical, in
// GET /api/v1/proxy/paths, with their error counts.
func TestTopPathsAPI(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/broken" {
			w.WriteHeader(500)
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	r, px := startProxy(t, []config.Route{{Name: "site", Upstreams: config.Strings{up.URL}}}, nil)
	for path, n := range map[string]int{"/a": 5, "/x/../broken": 3, "//b": 2} {
		for range n {
			resp, err := http.Get(px + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	want := []struct {
		path   string
		n, bad uint64
	}{{"/a", 5, 0}, {"/broken", 3, 3}, {"/b", 2, 0}}
	// Request events reach the view a moment after the responses: wait
	// for the last of them, then check every row.
	var res struct{ Paths []proxy.PathStat }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res.Paths = nil
		code := apiGet(t, r, "/api/v1/proxy/paths?since=15m&limit=3", &res)
		if code != 200 {
			t.Fatalf("%d %+v", code, res)
		}
		var n uint64
		for _, p := range res.Paths {
			n += p.Requests
		}
		if n >= 10 || time.Now().After(deadline) {
			break
		}
	}
	if len(res.Paths) != 3 {
		t.Fatalf("%+v, want 3 rows", res)
	}
	for i, w := range want {
		if p := res.Paths[i]; p.Path != w.path || p.Requests != w.n || p.Status5 != w.bad || p.MaxError != 0 {
			t.Errorf("row %d: %+v, want %s x%d (%d 5xx)", i, p, w.path, w.n, w.bad)
		}
	}
	if code := apiGet(t, r, "/api/v1/proxy/paths?since=2d", nil); code != 400 {
		t.Fatalf("since=2d: %d", code)
	}
}

func apiGet(t *testing.T, r *testutil.Running, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", r.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+r.Token)
	resp, err := testutil.Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}
