package testutil

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// DNSProxy is AdGuard's dnsproxy run by a test on loopback: a DNS over
// QUIC client and server (RFC 9250) to hold Ops's DoQ against, since
// Debian's kdig is built without QUIC. It is built, unmodified, from the
// version pinned in internal/testutil/tools/dnsproxy (go.mod and go.sum),
// once per machine into the user's cache directory.
type DNSProxy struct {
	Plain string // 127.0.0.1:port, UDP and TCP, when listening
	QUIC  string // 127.0.0.1:port, DoQ, when serving it
	cmd   *exec.Cmd
	out   *SyncBuffer
}

var dnsproxyBuild struct {
	once sync.Once
	bin  string
	err  error
}

// DNSProxyBinary builds dnsproxy (about 30 s the first time, with the
// module proxy) and returns its path.
func DNSProxyBinary(t testing.TB) string {
	t.Helper()
	b := &dnsproxyBuild
	b.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(file), "tools", "dnsproxy")
		version, err := pinnedVersion(filepath.Join(src, "go.mod"), "github.com/AdguardTeam/dnsproxy")
		if err != nil {
			b.err = err
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "ops-test-tools")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = err
			return
		}
		b.bin = filepath.Join(dir, "dnsproxy-"+version)
		if _, err := os.Stat(b.bin); err == nil {
			return
		}
		tmp := fmt.Sprintf("%s.%d.tmp", b.bin, os.Getpid())
		cmd := exec.Command("go", "build", "-o", tmp, "github.com/AdguardTeam/dnsproxy")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building dnsproxy %s: %v\n%s", version, err, out)
			return
		}
		b.err = os.Rename(tmp, b.bin)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// pinnedVersion reads a module's version from a go.mod's require lines.
func pinnedVersion(gomod, module string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == module {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s: no require of %s", gomod, module)
}

// DNSProxyOptions say what dnsproxy does: forward to Upstreams (its -u
// syntax: quic://, tls://, udp://...), listen for plain DNS, and serve DoQ
// with a certificate; CAFile is the CA it trusts for upstreams.
type DNSProxyOptions struct {
	Upstreams      []string
	Plain          bool
	QUICCert, QKey string
	CAFile         string
}

// StartDNSProxy runs dnsproxy until the test ends.
func StartDNSProxy(t testing.TB, o DNSProxyOptions) *DNSProxy {
	t.Helper()
	bin := DNSProxyBinary(t)
	ports := freePorts(t, 2)
	p := &DNSProxy{out: &SyncBuffer{}}
	args := []string{"-l", "127.0.0.1", "-p", "0", "--timeout", "5s"}
	if o.Plain {
		p.Plain = fmt.Sprintf("127.0.0.1:%d", ports[0])
		args[3] = fmt.Sprint(ports[0])
	}
	if o.QUICCert != "" {
		p.QUIC = fmt.Sprintf("127.0.0.1:%d", ports[1])
		args = append(args, "-q", fmt.Sprint(ports[1]), "--tls-crt", o.QUICCert, "--tls-key", o.QKey)
	}
	for _, u := range o.Upstreams {
		args = append(args, "-u", u)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if o.CAFile != "" {
		p.cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+o.CAFile)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	// Up when its log says so (a UDP port cannot be probed by dialling).
	deadline := time.Now().Add(20 * time.Second)
	for o.QUICCert != "" && !strings.Contains(p.out.String(), "listening quic") || o.Plain && !tcpUp(p.Plain) {
		if time.Now().After(deadline) {
			t.Fatalf("dnsproxy did not start:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func tcpUp(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// Log is what dnsproxy printed.
func (p *DNSProxy) Log() string { return p.out.String() }
