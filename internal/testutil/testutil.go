// Package testutil starts real Ops components inside a test process: the
// embedded bus, an external NATS server, and the whole app with chosen
// targets, each on 127.0.0.1 with a t.TempDir() and stopped on cleanup.
package testutil

import (
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
