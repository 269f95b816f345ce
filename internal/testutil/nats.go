package testutil

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSServer starts a standalone JetStream server on a random loopback port,
// as an external bus would be, and returns its client URL.
func NATSServer(t testing.TB) string {
	t.Helper()
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true, ServerName: "external",
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("external nats not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}
