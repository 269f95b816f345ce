package listfetch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestGet: a list arrives with its ETag, a 304 keeps it, and an error,
// an empty body or an oversize one changes nothing.
func TestGet(t *testing.T) {
	body, status := "a.example\n", 200
	var inm []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inm = append(inm, r.Header.Get("If-None-Match"))
		if status != 200 {
			w.WriteHeader(status)
			return
		}
		if r.Header.Get("If-None-Match") == `"1"` && body == "a.example\n" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"1"`)
		w.Write([]byte(body))
	}))
	defer srv.Close()
	ctx, hc := context.Background(), srv.Client()
	s := &Source{URL: srv.URL}
	if ch, err := Get(ctx, hc, s, 1<<20); !ch || err != nil || string(s.Body) != body || s.ETag != `"1"` {
		t.Fatalf("first: %v %v %+v", ch, err, s)
	}
	if ch, err := Get(ctx, hc, s, 1<<20); ch || err != nil || string(s.Body) != body || inm[1] != `"1"` {
		t.Fatalf("304: %v %v %+v %q", ch, err, s, inm)
	}
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{{"", 200, "empty"}, {" \n", 200, "empty"}, {"x", 500, "500"}, {strings.Repeat("x", 2<<20), 200, "larger than"}} {
		body, status = c.body, c.status
		if ch, err := Get(ctx, hc, s, 1<<20); ch || err == nil || !strings.Contains(err.Error(), c.want) || string(s.Body) != "a.example\n" {
			t.Fatalf("%q %d: %v %v, body %q", c.body, c.status, ch, err, s.Body)
		}
	}
}
