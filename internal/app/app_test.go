package app_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/app"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/logging"
)

func newApp(t *testing.T, mod func(*config.Config)) *app.App {
	t.Helper()
	c := config.Default()
	c.DataDir = t.TempDir()
	c.HTTP.Listen = "127.0.0.1:0"
	if mod != nil {
		mod(&c)
	}
	logs, _ := logging.New(io.Discard, "text", "info", nil)
	a, err := app.New(&c, logs)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestTargetsNeedTheirConfig: a module named on its own refuses to start,
// naming the key, when it has nothing to serve or nobody could reach it.
func TestTargetsNeedTheirConfig(t *testing.T) {
	for _, c := range []struct {
		targets []string
		want    string
	}{
		{[]string{"coap"}, "coap.listen"},
		{[]string{"proxy"}, "proxy.routes"},
		{[]string{"bus"}, "bus.listen"},
		{[]string{"api", "coap"}, "coap.listen"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := newApp(t, nil).Run(ctx, c.targets)
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--target=%s: %v, want an error naming %s", strings.Join(c.targets, ","), err, c.want)
		}
	}
	// With the key set, bus alone starts (and stops on cancel).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := newApp(t, func(c *config.Config) { c.Bus.Listen = "127.0.0.1:0" }).Run(ctx, []string{"bus"})
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("bus with bus.listen: %v", err)
	}
}

// TestDataDirLock: a second app on a data directory in use does not start,
// and says another Ops holds it.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	mod := func(c *config.Config) { c.DataDir = dir }
	ctx, cancel := context.WithCancel(context.Background())
	first := newApp(t, mod)
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx, []string{"api"}) }()
	if _, err := first.APIAddr(ctx); err != nil {
		t.Fatal(err)
	}
	err := newApp(t, mod).Run(context.Background(), []string{"api"})
	if !errors.Is(err, app.ErrDataDirInUse) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second app: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Released when the first stops.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	third := newApp(t, mod)
	go func() { done <- third.Run(ctx2, []string{"api"}) }()
	if _, err := third.APIAddr(ctx2); err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	cancel2()
	<-done
}
