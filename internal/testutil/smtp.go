package testutil

import (
	"bytes"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// SMTP is a real SMTP server for tests: Python's aiosmtpd (Debian's
// python3-aiosmtpd, which make test installs) storing what it receives in
// a Maildir.
type SMTP struct {
	Host    string
	Port    int
	Maildir string
}

// StartSMTP runs aiosmtpd on a loopback port until the test ends.
func StartSMTP(t testing.TB) *SMTP {
	t.Helper()
	py := "/usr/bin/python3" // Debian's, which has the package (not a pyenv one)
	if out, err := exec.Command(py, "-c", "import aiosmtpd").CombinedOutput(); err != nil {
		t.Fatalf("no aiosmtpd (%v: %s): run `make test` (scripts/test-deps.sh installs python3-aiosmtpd)", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &SMTP{Host: "127.0.0.1", Port: port, Maildir: filepath.Join(t.TempDir(), "mail")}
	cmd := exec.Command(py, "-m", "aiosmtpd", "-n", "-l", net.JoinHostPort(s.Host, strconv.Itoa(port)), "-c", "aiosmtpd.handlers.Mailbox", s.Maildir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		c, err := net.Dial("tcp", net.JoinHostPort(s.Host, strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
		return err
	})
	return s
}

// Messages reads the messages received so far, oldest first.
func (s *SMTP) Messages(t testing.TB) []*mail.Message {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(s.Maildir, "new"))
	type file struct {
		path string
		mod  time.Time
	}
	var fs []file
	for _, e := range ents {
		info, err := e.Info()
		if err == nil {
			fs = append(fs, file{filepath.Join(s.Maildir, "new", e.Name()), info.ModTime()})
		}
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].mod.Before(fs[j].mod) })
	var out []*mail.Message
	for _, f := range fs {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f.path, err)
		}
		out = append(out, m)
	}
	return out
}
