package proxy_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestBusOutage: with the bus stopped, requests are still served at full
// speed; their events spool to disk and, once the bus is back, every
// request's event is stored exactly once.
func TestBusOutage(t *testing.T) {
	nats := testutil.StartNATS(t, "")
	up, _ := echoUpstream(t, "up")
	r, base := startProxy(t, []config.Route{{Name: "r", Upstreams: config.Strings{up.URL}}}, func(c *config.Config) {
		c.Bus.URL = nats.URL
		c.Bus.PublishTimeout = config.Duration(time.Second)
	})
	const n = 300
	hit := func(i int) {
		resp, _ := get(t, base, "x.test", fmt.Sprintf("/r/%d", i))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	for i := 0; i < n/3; i++ {
		hit(i)
	}
	nats.Stop()
	start := time.Now()
	for i := n / 3; i < 2*n/3; i++ {
		hit(i)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("requests held up by the outage: %v for %d", d, n/3)
	}
	time.Sleep(2 * time.Second) // publishes time out and spool meanwhile
	nats.Restart(t)
	for i := 2 * n / 3; i < n; i++ {
		hit(i)
	}
	b := testutil.BusOf(t, r)
	counts := map[string]int{}
	testutil.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		got, _, err := b.Read(t.Context(), bus.ReadOptions{Filter: "ev.proxy.request", Limit: 5000})
		if err != nil {
			return err
		}
		counts = map[string]int{}
		for _, s := range got {
			var d struct{ Path string }
			_ = json.Unmarshal(s.Event.Data, &d)
			counts[d.Path]++
		}
		if len(counts) < n {
			return fmt.Errorf("%d of %d requests' events stored", len(counts), n)
		}
		return nil
	})
	for i := 0; i < n; i++ {
		if c := counts[fmt.Sprintf("/r/%d", i)]; c != 1 {
			t.Errorf("/r/%d stored %d times", i, c)
		}
	}
}
