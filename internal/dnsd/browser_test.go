package dnsd_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestClientCheckInChromium: headless Chromium set to secure DNS ("secure"
// mode: DoH only, no fallback to the system's resolver) with Ops's DoH on
// the proxy's TLS listener as its template, opens the client check page,
// and the page says its DNS goes through Ops, encrypted. Chromium keeps
// those settings in its profile's Local State (the same preferences the
// DnsOverHttpsMode and DnsOverHttpsTemplates policies set), which the test
// writes, so nothing outside the test's profile changes; it trusts the
// test's certificate by its key (--ignore-certificate-errors-spki-list).
func TestClientCheckInChromium(t *testing.T) {
	res := startResolver(t, func(d *config.DNS) { d.CheckDomain, d.CheckAddress = "dnscheck.test", "127.0.0.1" })
	profile := t.TempDir()
	template := "https://" + res.proxy + "/_ops/dns-query{?dns}"
	state, _ := json.Marshal(map[string]any{"dns_over_https": map[string]any{"mode": "secure", "templates": template}})
	if err := os.WriteFile(filepath.Join(profile, "Local State"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testutil.BrowserIn(t, profile, chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, res.certFile)))

	if _, err := chromedp.Run(ctx, chromedp.Navigate("https://"+res.proxy+"/_ops/dns-check")); err != nil {
		t.Fatalf("the check page: %v", err)
	}
	verdict, err := chromedp.Run(ctx, chromedp.Poll[string](`(function(){var t = document.getElementById("v").textContent; return t.indexOf("Checking") < 0 ? t : null})()`,
		chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		t.Fatalf("the check page gave no verdict: %v", err)
	}
	if !strings.Contains(verdict, "encrypted (doh)") || strings.Contains(verdict, "not encrypted") {
		t.Fatalf("the page says %q; want through Ops, encrypted over DoH", verdict)
	}
	// The query itself came in over DoH, from Chromium.
	testutil.CheckFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		_, b := res.api(t, "GET", "/api/v1/events?subject=ev.dns.client_check&limit=10", res.r.Token, "")
		if !strings.Contains(b, `"transport":"doh"`) || !strings.Contains(b, "Chrome/") {
			return fmt.Errorf("no client_check event from Chromium over DoH: %s", b)
		}
		return nil
	})
}

// spkiHash is the base64 SHA-256 of a PEM certificate's public key, as
// Chromium's --ignore-certificate-errors-spki-list takes it.
func spkiHash(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", certFile)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
