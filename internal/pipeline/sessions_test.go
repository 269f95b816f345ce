package pipeline_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/testutil"
)

func start(t *testing.T, dir string) *testutil.Running {
	t.Helper()
	c, err := config.Parse([]byte("processors:\n  - name: sess\n    from: ev.web.page\n    use: session\n    to: ev.web.page_s\n"))
	if err != nil {
		t.Fatal(err)
	}
	return testutil.StartApp(t, []string{"all"}, func(cfg *config.Config) {
		cfg.Processors = c.Processors
		cfg.DataDir = dir
	})
}

func page(t *testing.T, url, id, at string) {
	t.Helper()
	body := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/t","type":"web.page","time":%q,"data":{"anonymousId":"visitor-1"}}`, id, at)
	resp, err := http.Post(url+"/api/v1/events", event.ContentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

type session struct {
	ID  string
	New bool
	N   float64
}

func sessions(t *testing.T, url string, n int) []session {
	t.Helper()
	var out []session
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(url + "/api/v1/events?subject=ev.web.page_s")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var p struct{ Events []api.StoredEvent }
		_ = json.NewDecoder(resp.Body).Decode(&p)
		out = out[:0]
		for _, e := range p.Events {
			var d struct {
				Context struct{ Session session }
			}
			_ = json.Unmarshal(e.Event.Data, &d)
			out = append(out, d.Context.Session)
		}
		if len(out) < n {
			return fmt.Errorf("%d of %d", len(out), n)
		}
		return nil
	})
	return out
}

// A session in progress survives a restart: its state is in the bus.
func TestSessionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir)
	page(t, r.URL, "p1", "2026-11-27T10:00:00Z")
	page(t, r.URL, "p2", "2026-11-27T10:10:00Z")
	before := sessions(t, r.URL, 2)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r = start(t, dir)
	page(t, r.URL, "p3", "2026-11-27T10:20:00Z") // within 30 minutes of p2
	page(t, r.URL, "p4", "2026-11-27T11:30:00Z") // after a gap: a new session
	all := sessions(t, r.URL, 4)
	if !before[0].New || before[1].New || before[0].ID != before[1].ID {
		t.Fatalf("before restart: %+v", before)
	}
	if all[2].ID != before[0].ID || all[2].New || all[2].N != 3 {
		t.Fatalf("after restart the session did not continue: %+v", all)
	}
	if all[3].ID == all[2].ID || !all[3].New {
		t.Fatalf("a gap did not start a new session: %+v", all)
	}
}
