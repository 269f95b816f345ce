// Package testutil starts real Ops components inside a test process: the
// embedded bus, an external NATS server, and the whole app with chosen
// targets, each on 127.0.0.1 with a t.TempDir() and stopped on cleanup.
package testutil

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// CheckFor polls fn every sleep until it returns nil or total has passed,
// then fails the test with fn's last error.
func CheckFor(t testing.TB, total, sleep time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(sleep)
	}
	t.Fatalf("not true after %v: %v", total, err)
}

// FreePort returns a loopback port that was free a moment ago, for a
// server the test starts that cannot report the port it bound.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
