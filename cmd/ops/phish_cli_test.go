package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/testutil"
)

// TestPhishCommands: a real ops serve with protected domains and a feed;
// ops phish check explains a lookalike, a listed URL and a clean name,
// ops phish feeds lists the feed, and a bad target is a clear error.
func TestPhishCommands(t *testing.T) {
	dir := t.TempDir()
	feed := filepath.Join(dir, "openphish.txt")
	if err := os.WriteFile(feed, []byte("https://login.evil-one.test/signin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "ops.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "phishing:\n  protect: [paypal.com]\n  feeds:\n    - {source: %s, format: openphish}\n", feed), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startOps(t, filepath.Join(dir, "data"), "--config", conf)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), append([]string{"--server", p.url}, args...)...)
		cmd.Env = append(os.Environ(), "OPS_TOKEN="+p.token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("phish", "check", "xn--pypal-4ve.com")
	if err != nil || !strings.Contains(out, "xn--pypal-4ve.com: block (score 140)") || !strings.Contains(out, "confusable") || !strings.Contains(out, "mixes Latin and Cyrillic") || !strings.Contains(out, "never seen before") {
		t.Fatalf("phish check of a lookalike: %v\n%s", err, out)
	}
	testutil.CheckFor(t, 10*time.Second, 200*time.Millisecond, func() error {
		out, err := run("phish", "check", "https://login.evil-one.test/signin")
		if err != nil || !strings.Contains(out, ": block (score 120)") || !strings.Contains(out, "listed in "+feed) {
			return fmt.Errorf("phish check of a listed URL: %v\n%s", err, out)
		}
		return nil
	})
	if out, err := run("phish", "check", "paypal.com"); err != nil || !strings.Contains(out, "paypal.com: allow (score 0)") || !strings.Contains(out, "nothing found") {
		t.Fatalf("phish check of the brand itself: %v\n%s", err, out)
	}
	if out, err := run("phish", "feeds", "-o", "csv"); err != nil || !strings.Contains(out, feed+",1,0,") {
		t.Fatalf("phish feeds: %v\n%s", err, out)
	}
	if out, err := run("phish", "check", "http://exa mple.com/"); err == nil || !strings.Contains(out, "target") {
		t.Fatalf("phish check of a bad target: %v\n%s", err, out)
	}
}

// TestCAExport: ops ca export gets the forward proxy's CA from a real
// ops serve with interception on, to standard output or a file.
func TestCAExport(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ops.yaml")
	if err := os.WriteFile(conf, []byte("proxy:\n  forward:\n    listen: 127.0.0.1:0\n    intercept:\n      enabled: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startOps(t, filepath.Join(dir, "data"), "--config", conf)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), append([]string{"--server", p.url}, args...)...)
		cmd.Env = append(os.Environ(), "OPS_TOKEN=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("ca", "export")
	block, _ := pem.Decode([]byte(out))
	if err != nil || block == nil {
		t.Fatalf("ca export: %v\n%s", err, out)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.IsCA || !strings.HasPrefix(cert.Subject.CommonName, "Ops forward proxy CA") {
		t.Fatalf("exported certificate: %v %+v", err, cert.Subject)
	}
	file := filepath.Join(dir, "ca.pem")
	if out, err := run("ca", "export", "--out", file); err != nil || !strings.Contains(out, "wrote "+file) {
		t.Fatalf("ca export --out: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Fatalf("the file: %s", b)
	}
	// The key stays on the server, readable by its owner only.
	st, err := os.Stat(filepath.Join(dir, "data", "forward-ca", "ca.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v %v", err, st)
	}
}
