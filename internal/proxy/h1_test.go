package proxy

import (
	"bufio"
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

// TestAlive: a pooled connection is usable only while the upstream keeps
// it open and quiet: closed (EOF), reset (RST) or with unasked-for bytes
// it is not.
func TestAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (*h1Conn, *net.TCPConn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return &h1Conn{c: c, br: bufio.NewReader(c)}, s.(*net.TCPConn)
	}
	settle := func() { time.Sleep(50 * time.Millisecond) }
	pc, _ := pair()
	if !alive(pc) {
		t.Error("an open, quiet connection is not alive")
	}
	pc, s := pair()
	s.Close()
	settle()
	if alive(pc) {
		t.Error("a connection the upstream closed is alive")
	}
	pc, s = pair()
	_ = s.SetLinger(0) // close with RST
	s.Close()
	settle()
	if alive(pc) {
		t.Error("a reset connection is alive")
	}
	pc, s = pair()
	_, _ = s.Write([]byte("HTTP/1.1 200 OK\r\n"))
	settle()
	if alive(pc) {
		t.Error("a connection with bytes nobody asked for is alive")
	}
}
