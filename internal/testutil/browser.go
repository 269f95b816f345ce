package testutil

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser starts Debian's headless Chromium (`make test` installs it) with
// a throwaway profile and returns a context to drive it, ended on cleanup.
func Browser(t testing.TB) context.Context {
	t.Helper()
	return BrowserIn(t, t.TempDir())
}

// BrowserIn is Browser with the profile in dir (a test may write its
// Local State first, e.g. secure DNS settings) and more flags.
func BrowserIn(t testing.TB, dir string, flags ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	var path string
	for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(p); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no chromium: run `make test` (scripts/test-deps.sh installs Debian's chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(dir))
	opts = append(opts, flags...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	return ctx
}
