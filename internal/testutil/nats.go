package testutil

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is a standalone JetStream server, as an external bus would be.
type NATS struct {
	URL  string
	opts server.Options
	srv  *server.Server
}

// NATSServer starts a standalone JetStream server on a random loopback port
// and returns its client URL.
func NATSServer(t testing.TB) string {
	return StartNATS(t, "").URL
}

// StartNATS starts a standalone JetStream server; storeDir "" means a temp dir.
func StartNATS(t testing.TB, storeDir string) *NATS {
	t.Helper()
	if storeDir == "" {
		storeDir = t.TempDir()
	}
	n := &NATS{opts: server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: storeDir, NoSigs: true, NoLog: true, ServerName: "external",
	}}
	n.start(t)
	n.URL = n.srv.ClientURL()
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port // a restart keeps the port
	t.Cleanup(n.Stop)
	return n
}

func (n *NATS) start(t testing.TB) {
	t.Helper()
	opts := n.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("external nats not ready on port " + strconv.Itoa(opts.Port))
	}
	n.srv = s
}

// Stop shuts the server down, as an outage would.
func (n *NATS) Stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// Restart starts the server again on the same port and store.
func (n *NATS) Restart(t testing.TB) { n.start(t) }
