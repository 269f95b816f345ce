package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestH1Transport: pooled connections are reused; one the upstream closed
// while idle is replaced without the client noticing, for GET and for a
// request with a body; HEAD, chunked, 1xx and Connection: close behave.
func TestH1Transport(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "b")
		case "/early":
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "ok")
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		default:
			b, _ := io.ReadAll(r.Body)
			_, _ = io.WriteString(w, r.Method+":"+string(b))
		}
	}))
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr := newH1Transport(http.DefaultTransport, 5*time.Second)
	do := func(method, path, body string) (int, string) {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(context.Background(), method, srv.URL+path, r)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	for i := 0; i < 5; i++ {
		if _, b := do("GET", "/", ""); b != "GET:" {
			t.Fatal(b)
		}
	}
	if conns.Load() != 1 {
		t.Fatalf("%d connections for 5 sequential requests", conns.Load())
	}
	time.Sleep(300 * time.Millisecond) // the upstream closes the idle connection
	if _, b := do("GET", "/", ""); b != "GET:" {
		t.Fatal(b)
	}
	time.Sleep(300 * time.Millisecond)
	if _, b := do("POST", "/", "payload"); b != "POST:payload" {
		t.Fatalf("POST after idle close: %q", b)
	}
	if c, b := do("HEAD", "/", ""); c != 200 || b != "" {
		t.Fatalf("HEAD: %d %q", c, b)
	}
	if _, b := do("GET", "/chunked", ""); b != "ab" {
		t.Fatalf("chunked: %q", b)
	}
	if c, b := do("GET", "/early", ""); c != 200 || b != "ok" {
		t.Fatalf("1xx: %d %q", c, b)
	}
	before := conns.Load()
	do("GET", "/close", "")
	do("GET", "/", "")
	if conns.Load() != before+1 {
		t.Fatalf("connection reused after Connection: close (%d -> %d)", before, conns.Load())
	}
}
