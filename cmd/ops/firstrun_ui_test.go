package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/opsgraph/ops/internal/testutil"
)

var setupRE = regexp.MustCompile(`url="?(http://[^\s"]+/setup\?code=([0-9a-f]{32}))`)

// TestFirstRunInChromium: a fresh Ops (empty data dir) prints a one-time
// set-up link; a person opens it in a browser, creates the first admin and
// lands on the dashboard, signed in. The link then refuses, a wrong code
// never worked, and a restart prints no new link once a user exists.
func TestFirstRunInChromium(t *testing.T) {
	dir := t.TempDir()
	p := startOps(t, dir)
	var link, code string
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		p.mu.Lock()
		m := setupRE.FindStringSubmatch(p.logs.String())
		p.mu.Unlock()
		if m == nil {
			return fmt.Errorf("no set-up link in the log yet")
		}
		link, code = m[1], m[2]
		return nil
	})
	u, _ := url.Parse(link)
	if "http://"+u.Host != p.url {
		t.Fatalf("link %s is not on the listener %s", link, p.url)
	}
	origin := ""
	post := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", p.url+"/api/v1/setup", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := testutil.Anonymous.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	wrong := strings.Repeat("0", 32)
	if code == wrong {
		wrong = strings.Repeat("1", 32)
	}
	if st, b := post(`{"code":"` + wrong + `","name":"mallory","password":"mallory-password"}`); st != 403 || !strings.Contains(b, `"field":"code"`) {
		t.Fatalf("wrong code: %d %s", st, b)
	}
	// A page on another site cannot post the form for someone who has the
	// link open.
	origin = "https://evil.example"
	if st, b := post(`{"code":"` + code + `","name":"mallory","password":"mallory-password"}`); st != 403 || !strings.Contains(b, `"field":"Origin"`) {
		t.Fatalf("cross-origin set-up: %d %s", st, b)
	}
	origin = ""
	if st, b := post(`{"code":"` + code + `","name":"x y","password":"long-enough"}`); st != 400 || !strings.Contains(b, `"field":"name"`) {
		t.Fatalf("bad name: %d %s", st, b)
	}
	if st, b := post(`{"code":"` + code + `","name":"ann","password":"short"}`); st != 400 || !strings.Contains(b, `"field":"password"`) {
		t.Fatalf("short password: %d %s", st, b)
	}

	ctx := testutil.Browser(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`#name`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), "ann"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "ann-is-admin-now"),
		chromedp.SendKeys(chromedp.CSS(`#confirm`), "ann-is-admin-now"),
		chromedp.Submit(chromedp.CSS(`#confirm`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-page=dashboard]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	user, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`.me .user`)))
	if err != nil || user != "ann" {
		t.Fatalf("signed in as %q (%v)", user, err)
	}
	// Ann is an admin: the Access page is hers, and it lists her.
	if err := chromedp.Do(ctx, chromedp.Navigate(p.url+"/ui/access"), chromedp.WaitVisible(chromedp.Search(`//div[@id="users"]//td[text()="ann"]`))); err != nil {
		t.Fatal(err)
	}
	// The link is spent.
	if st, b := post(`{"code":"` + code + `","name":"bob","password":"bob-password"}`); st != 410 {
		t.Fatalf("second use: %d %s", st, b)
	}
	resp, err := testutil.Anonymous.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 410 {
		t.Fatalf("GET spent link: %d", resp.StatusCode)
	}

	// Restart: a user exists, so no link.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	<-p.eof
	p2 := startOps(t, dir)
	time.Sleep(500 * time.Millisecond)
	p2.mu.Lock()
	logs := p2.logs.String()
	p2.mu.Unlock()
	if strings.Contains(logs, "/setup?code=") {
		t.Fatalf("a set-up link after a user exists:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.token")); err != nil {
		t.Fatalf("the first-run token for the CLI is still made: %v", err)
	}
}
