package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Unbound is Debian's unbound run by a test on loopback: a resolver with
// the local zones the test gives, answering plain DNS (UDP and TCP) and
// DNS over TLS with a certificate from a fresh test CA.
type Unbound struct {
	Plain  string // 127.0.0.1:port, UDP and TCP
	TLS    string // 127.0.0.1:port, DoT
	CAFile string // the CA that signed the DoT certificate
	cmd    *exec.Cmd
	out    *SyncBuffer
}

// StartUnbound runs unbound with localData: lines of its local-zone and
// local-data options (e.g. `local-data: "www.test. 300 IN A 192.0.2.1"`).
// It fails the test when unbound is not installed (make test installs it).
func StartUnbound(t testing.TB, localData string) *Unbound {
	t.Helper()
	bin, err := exec.LookPath("unbound")
	if err != nil {
		bin = "/usr/sbin/unbound"
	}
	_, err = os.Stat(bin)
	Require(t, err == nil, "unbound", "apt-get install --no-install-recommends unbound")
	dir := t.TempDir()
	u := &Unbound{CAFile: filepath.Join(dir, "ca.pem"), out: &SyncBuffer{}}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeTLSFiles(t, u.CAFile, cert, key)
	ports := freePorts(t, 2)
	u.Plain, u.TLS = fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	conf := filepath.Join(dir, "unbound.conf")
	var b strings.Builder
	fmt.Fprintf(&b, `server:
  interface: 127.0.0.1@%d
  interface: 127.0.0.1@%d
  tls-port: %d
  tls-service-pem: %q
  tls-service-key: %q
  do-daemonize: no
  use-syslog: no
  logfile: ""
  verbosity: 1
  username: ""
  chroot: ""
  directory: %q
  pidfile: %q
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  do-not-query-localhost: no
  num-threads: 1
  so-reuseport: no
`, ports[0], ports[1], ports[1], cert, key, dir, filepath.Join(dir, "unbound.pid"))
	for _, l := range strings.Split(strings.TrimSpace(localData), "\n") {
		fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(l))
	}
	b.WriteString("remote-control:\n  control-enable: no\n")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(filepath.Dir(bin), "unbound-checkconf"), conf).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s\n%s", err, out, b.String())
	}
	u.cmd = exec.Command(bin, "-d", "-c", conf)
	u.cmd.Stdout, u.cmd.Stderr = u.out, u.out
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", u.TLS, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unbound did not start:\n%s", u.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return u
}

// Stop ends unbound (an outage, for a test of what happens then).
func (u *Unbound) Stop() {
	if u.cmd != nil && u.cmd.Process != nil {
		_ = u.cmd.Process.Kill()
		_ = u.cmd.Wait()
		u.cmd = nil
	}
}

// Log is what unbound printed.
func (u *Unbound) Log() string { return u.out.String() }

// TLSFiles writes a fresh CA and a server certificate it signed for
// 127.0.0.1 and localhost, and returns the three PEM files.
func TLSFiles(t testing.TB) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeTLSFiles(t, ca, cert, key)
	return ca, cert, key
}
