package views_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/testutil"
	"github.com/opsgraph/ops/internal/views"
)

const graphYAML = `
processors:
  - name: orders_eu
    from: ev.shop.order
    where: this.data.region == "eu"
    map: |
      root.total = this.data.total * 100
      root.country = this.data.country
    to: ev.eu.${! this.data.country.lowercase() }
  - name: ua
    from: ev.track.page
    use: useragent
    to: ev.track.page_ua
  - name: strict
    from: ev.shop.order
    map: root.cents = this.data.total.number() * 100
    to: ev.strict.order
views:
  - name: by_country
    from: ev.eu.*
    key: {country: this.data.country}
    measures:
      orders: count
      cents: sum(this.data.total)
      biggest: max(this.data.total)
      smallest: min(this.data.total)
      mean: avg(this.data.total)
  - name: totals
    from: ev.view.by_country.*
    key: {all: '"all"'}
    measures:
      changes: count
      countries: uniq(this.data.key.country)
      last_country: last(this.data.key.country)
  - name: hourly
    from: ev.shop.order
    key: {region: this.data.region}
    window: 1h
    lateness: 30m
    measures:
      n: count
  - name: customer
    from: ev.shop.customer
    key: {id: this.data.id}
    measures:
      state: latest
  - name: cart
    from: ev.shop.cart
    key: {id: this.data.id}
    measures:
      items: 'latest(root = if this.event.data.op == "clear" { deleted() } else { (this.state | []).append(this.event.data.item) })'
`

func startGraph(t *testing.T, dir ...string) *testutil.Running {
	t.Helper()
	c, err := config.Parse([]byte(graphYAML))
	if err != nil {
		t.Fatal(err)
	}
	return testutil.StartApp(t, []string{"all"}, func(cfg *config.Config) {
		cfg.Processors, cfg.Views = c.Processors, c.Views
		if len(dir) > 0 {
			cfg.DataDir = dir[0]
		}
	})
}

func publish(t *testing.T, url string, evs ...string) {
	t.Helper()
	resp, err := http.Post(url+"/api/v1/events", event.BatchContentType, strings.NewReader("["+strings.Join(evs, ",")+"]"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
}

func ev(id, typ, tm, data string) string {
	if tm == "" {
		tm = "2026-11-27T10:00:00Z"
	}
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/t","type":%q,"time":%q,"data":%s}`, id, typ, tm, data)
}

type result struct {
	Rows   []views.Row `json:"rows"`
	Total  int         `json:"total"`
	Cursor string      `json:"cursor"`
}

func rows(t *testing.T, url, view, query string) result {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/views/" + view + "?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r result
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func waitRows(t *testing.T, url, view, query string, ok func(result) error) result {
	t.Helper()
	var r result
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		r = rows(t, url, view, query)
		return ok(r)
	})
	return r
}

func TestGraphEndToEnd(t *testing.T) {
	r := startGraph(t)
	publish(t, r.URL,
		ev("o1", "shop.order", "", `{"region":"eu","country":"DE","total":10}`),
		ev("o2", "shop.order", "", `{"region":"eu","country":"DE","total":30}`),
		ev("o3", "shop.order", "", `{"region":"eu","country":"FR","total":5}`),
		ev("o4", "shop.order", "", `{"region":"us","country":"US","total":7}`),
		ev("o5", "shop.order", "", `{"region":"eu","country":"IT","total":"lots"}`),
	)
	got := waitRows(t, r.URL, "by_country", "sort=country", func(r result) error {
		// IT's total "lots" fails orders_eu's map: a dead letter, no row.
		if r.Total != 2 {
			return fmt.Errorf("%d rows", r.Total)
		}
		return nil
	})
	de := got.Rows[0]
	if de.Key["country"] != "DE" || de.Values["orders"] != 2.0 || de.Values["cents"] != 4000.0 ||
		de.Values["biggest"] != 3000.0 || de.Values["smallest"] != 1000.0 || de.Values["mean"] != 2000.0 {
		t.Fatalf("DE row: %+v", de)
	}
	if got.Rows[1].Key["country"] != "FR" || got.Rows[1].Values["orders"] != 1.0 {
		t.Fatalf("FR row: %+v", got.Rows[1])
	}

	// Two-level graph: totals folds by_country's change events.
	waitRows(t, r.URL, "totals", "", func(r result) error {
		if len(r.Rows) != 1 {
			return fmt.Errorf("%d rows", len(r.Rows))
		}
		v := r.Rows[0].Values
		// by_country changed 3 times (DE created, DE updated or folded in one
		// batch, FR created): at least 2 changes, exactly 2 countries.
		if v["countries"] != 2.0 || v["changes"].(float64) < 2 {
			return fmt.Errorf("totals %v", v)
		}
		return nil
	})

	// Dead letters: strict's map fails on "lots"; nothing dropped silently.
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(r.URL + "/api/v1/events?subject=ev.deadletter.>")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var p struct {
			Events []struct {
				Subject string
				Event   event.Event
			}
		}
		_ = json.NewDecoder(resp.Body).Decode(&p)
		for _, e := range p.Events {
			if e.Subject == "ev.deadletter.strict" && strings.Contains(string(e.Event.Data), `"id":"o5"`) &&
				strings.Contains(string(e.Event.Data), `"stage":"map"`) {
				return nil
			}
		}
		return fmt.Errorf("no dead letter for o5 yet: %d events", len(p.Events))
	})

	// Processor status.
	var ps struct {
		Processors []struct {
			Name                      string
			In, Out, Filtered, Errors uint64
		}
	}
	resp, _ := http.Get(r.URL + "/api/v1/processors")
	_ = json.NewDecoder(resp.Body).Decode(&ps)
	resp.Body.Close()
	for _, p := range ps.Processors {
		if p.Name == "orders_eu" && (p.In != 5 || p.Out != 3 || p.Filtered != 1 || p.Errors != 1) {
			t.Fatalf("orders_eu status %+v", p)
		}
	}
}

func TestEnricherInAProcessor(t *testing.T) {
	r := startGraph(t)
	publish(t, r.URL, ev("p1", "track.page", "", `{"context":{"userAgent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"}}`))
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(r.URL + "/api/v1/events?subject=ev.track.page_ua")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var p struct{ Events []struct{ Event event.Event } }
		_ = json.NewDecoder(resp.Body).Decode(&p)
		if len(p.Events) != 1 {
			return fmt.Errorf("%d enriched events", len(p.Events))
		}
		var d struct {
			Context struct{ UA map[string]any }
		}
		_ = json.Unmarshal(p.Events[0].Event.Data, &d)
		if d.Context.UA["browser"] != "Safari" || d.Context.UA["device"] != "mobile" {
			return fmt.Errorf("ua %v", d.Context.UA)
		}
		return nil
	})
}

func TestLatestAndDelete(t *testing.T) {
	r := startGraph(t)
	publish(t, r.URL,
		ev("c1", "shop.customer", "", `{"id":"u1","name":"Ann","plan":"free"}`),
		ev("c2", "shop.customer", "", `{"id":"u1","plan":"pro"}`),
		ev("k1", "shop.cart", "", `{"id":"cart1","item":"a"}`),
		ev("k2", "shop.cart", "", `{"id":"cart1","item":"b"}`),
		ev("k3", "shop.cart", "", `{"id":"cart2","item":"z"}`),
	)
	waitRows(t, r.URL, "customer", "key.id=u1", func(r result) error {
		if len(r.Rows) != 1 {
			return fmt.Errorf("%d rows", len(r.Rows))
		}
		st, _ := r.Rows[0].Values["state"].(map[string]any)
		if st["name"] != "Ann" || st["plan"] != "pro" {
			return fmt.Errorf("state %v", st)
		}
		return nil
	})
	waitRows(t, r.URL, "cart", "key.id=cart1", func(r result) error {
		if len(r.Rows) != 1 || fmt.Sprint(r.Rows[0].Values["items"]) != "[a b]" {
			return fmt.Errorf("cart %+v", r.Rows)
		}
		return nil
	})
	publish(t, r.URL, ev("k4", "shop.cart", "", `{"id":"cart1","op":"clear"}`))
	waitRows(t, r.URL, "cart", "", func(r result) error {
		if len(r.Rows) != 1 || r.Rows[0].Key["id"] != "cart2" {
			return fmt.Errorf("after clear: %+v", r.Rows)
		}
		return nil
	})
	// The delete is an event too.
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(r.URL + "/api/v1/events?subject=ev.view.cart.deleted")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var p struct{ Events []struct{ Event event.Event } }
		_ = json.NewDecoder(resp.Body).Decode(&p)
		if len(p.Events) != 1 || !strings.Contains(string(p.Events[0].Event.Data), `"new":null`) {
			return fmt.Errorf("deleted events: %d", len(p.Events))
		}
		return nil
	})
}

func TestWindowsAndLateEvents(t *testing.T) {
	r := startGraph(t)
	publish(t, r.URL,
		ev("w1", "shop.order", "2026-11-27T10:05:00Z", `{"region":"eu"}`),
		ev("w2", "shop.order", "2026-11-27T10:59:59Z", `{"region":"eu"}`),
		ev("w3", "shop.order", "2026-11-27T11:00:00Z", `{"region":"eu"}`),
		ev("w4", "shop.order", "2026-11-27T13:00:00Z", `{"region":"eu"}`),
	)
	// The 13:00 event moved the watermark; 10:xx closes at 11:00 + 30m lateness.
	publish(t, r.URL,
		ev("late", "shop.order", "2026-11-27T10:30:00Z", `{"region":"eu"}`),
		ev("ontime", "shop.order", "2026-11-27T12:40:00Z", `{"region":"eu"}`),
	)
	got := waitRows(t, r.URL, "hourly", "key.region=eu", func(r result) error {
		if r.Total != 4 {
			return fmt.Errorf("%d windows", r.Total)
		}
		n := 0.0
		for _, row := range r.Rows {
			n += row.Values["n"].(float64)
		}
		if n != 5 {
			return fmt.Errorf("%v events counted", n)
		}
		return nil
	})
	if got.Rows[0].Window.Format(time.RFC3339) != "2026-11-27T10:00:00Z" || got.Rows[0].Values["n"] != 2.0 {
		t.Fatalf("10:00 window: %+v", got.Rows[0])
	}
	// from/to select windows.
	sel := rows(t, r.URL, "hourly", "from=2026-11-27T11:00:00Z&to=2026-11-27T13:00:00Z")
	if sel.Total != 2 {
		t.Fatalf("from/to: %+v", sel)
	}
}

func TestQueryAndCSV(t *testing.T) {
	r := startGraph(t)
	var evs []string
	names := []string{`a,b`, `quote"d`, "new\nline", "Zürich ✓"}
	for i, n := range names {
		b, _ := json.Marshal(n)
		evs = append(evs, ev(fmt.Sprint("q", i), "shop.customer", "", fmt.Sprintf(`{"id":%s}`, b)))
	}
	publish(t, r.URL, evs...)
	waitRows(t, r.URL, "customer", "", func(r result) error {
		if r.Total != 4 {
			return fmt.Errorf("%d rows", r.Total)
		}
		return nil
	})
	resp, err := http.Get(r.URL + "/api/v1/views/customer?format=csv&sort=id")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || recs[0][0] != "id" || recs[0][1] != "state" {
		t.Fatalf("csv %q", recs)
	}
	got := map[string]bool{}
	for _, rec := range recs[1:] {
		got[rec[0]] = true
	}
	for _, n := range names {
		if !got[n] {
			t.Errorf("csv lost %q: %q", n, recs)
		}
	}
	// Streaming CSV (no sort) holds the same rows.
	req, _ := http.NewRequest("GET", r.URL+"/api/v1/views/customer", nil)
	req.Header.Set("Accept", "text/csv")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ = csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if len(recs) != 5 {
		t.Fatalf("streamed csv: %d records", len(recs))
	}
	// Paging.
	p1 := rows(t, r.URL, "customer", "sort=id&limit=3")
	p2 := rows(t, r.URL, "customer", "sort=id&limit=3&cursor="+p1.Cursor)
	if len(p1.Rows) != 3 || p1.Cursor != "3" || len(p2.Rows) != 1 || p2.Cursor != "" {
		t.Fatalf("paging: %d %q %d %q", len(p1.Rows), p1.Cursor, len(p2.Rows), p2.Cursor)
	}
	// Bad parameters name themselves.
	for q, field := range map[string]string{"key.nope=1": "key.nope", "limit=0": "limit", "sort=zzz": "sort", "from=x": "from", "what=1": "what"} {
		resp, _ := http.Get(r.URL + "/api/v1/views/customer?" + q)
		var eb struct{ Error, Field string }
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != 400 || eb.Field != field {
			t.Errorf("%s: %d %+v", q, resp.StatusCode, eb)
		}
	}
	if resp, _ := http.Get(r.URL + "/api/v1/views/nope"); resp.StatusCode != 404 {
		t.Errorf("unknown view: %d", resp.StatusCode)
	}
}

func TestRebuild(t *testing.T) {
	dir := t.TempDir()
	r := startGraph(t, dir)
	var evs []string
	for i := 0; i < 300; i++ {
		evs = append(evs, ev(fmt.Sprint("rb", i), "shop.customer", "", fmt.Sprintf(`{"id":"c%d","n":%d}`, i%10, i)))
	}
	publish(t, r.URL, evs...)
	waitRows(t, r.URL, "customer", "", func(r result) error {
		if r.Total != 10 {
			return fmt.Errorf("%d rows", r.Total)
		}
		return nil
	})
	changes := func() int {
		resp, err := http.Get(r.URL + "/api/v1/events?subject=ev.view.customer.>&limit=10000")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p struct{ Events []json.RawMessage }
		_ = json.NewDecoder(resp.Body).Decode(&p)
		return len(p.Events)
	}
	before := changes()
	resp, err := http.Post(r.URL+"/api/v1/views/customer/rebuild", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var st views.RebuildStatus
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != 202 || st.State != "running" || st.Generation != 1 {
		t.Fatalf("rebuild: %d %+v", resp.StatusCode, st)
	}
	// Queries keep answering while it runs.
	if got := rows(t, r.URL, "customer", ""); got.Total != 10 {
		t.Fatalf("during rebuild: %d rows", got.Total)
	}
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(r.URL + "/api/v1/views/customer/rebuild")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&st)
		if st.State != "done" {
			return fmt.Errorf("state %s %+v", st.State, st)
		}
		return nil
	})
	if st.Events != 300 || st.EventsTotal != 300 || st.Progress != 1 || st.MessagesTotal == 0 {
		t.Fatalf("final status %+v", st)
	}
	all := rows(t, r.URL, "customer", "")
	if all.Total != 10 {
		t.Fatalf("after rebuild %d rows, status %+v", all.Total, st)
	}
	got := rows(t, r.URL, "customer", "key.id=c3")
	state, _ := got.Rows[0].Values["state"].(map[string]any)
	if got.Total != 1 || state["n"] != 293.0 {
		t.Fatalf("after rebuild: %+v", got)
	}
	// New events fold into the new generation.
	publish(t, r.URL, ev("rb-new", "shop.customer", "", `{"id":"c3","n":1000}`))
	waitRows(t, r.URL, "customer", "key.id=c3", func(r result) error {
		if st, _ := r.Rows[0].Values["state"].(map[string]any); st["n"] != 1000.0 {
			return fmt.Errorf("state %v", st)
		}
		return nil
	})
	// The rebuild republished nothing: one change for the new event only.
	if after := changes(); after != before+1 {
		t.Fatalf("change events %d -> %d", before, after)
	}
	// A restart opens the rebuilt generation.
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r2 := startGraph(t, dir)
	got = waitRows(t, r2.URL, "customer", "", func(r result) error {
		if r.Total != 10 {
			return fmt.Errorf("%d rows after restart", r.Total)
		}
		return nil
	})
	if st := rows(t, r2.URL, "customer", "key.id=c3").Rows[0].Values["state"].(map[string]any); st["n"] != 1000.0 {
		t.Fatalf("after restart: %v", st)
	}
}

// TestUndecodableGoesToDeadLetters: a message on a view's subjects that is
// not an Ops event is sent to the view's dead letters (as a processor's
// would be), not acknowledged away without a trace, and the view goes on.
func TestUndecodableGoesToDeadLetters(t *testing.T) {
	r := startGraph(t)
	b := testutil.BusOf(t, r)
	if _, err := b.JetStream().PublishMsg(context.Background(), &nats.Msg{Subject: "ev.shop.customer", Data: []byte("{not json")}); err != nil {
		t.Fatal(err)
	}
	publish(t, r.URL, ev("c9", "shop.customer", "", `{"id":"u9","name":"Zed"}`))
	waitRows(t, r.URL, "customer", "key.id=u9", func(r result) error {
		if len(r.Rows) != 1 {
			return fmt.Errorf("%d rows", len(r.Rows))
		}
		return nil
	})
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(r.URL + "/api/v1/events?subject=ev.deadletter.customer")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var p struct{ Events []struct{ Event event.Event } }
		_ = json.NewDecoder(resp.Body).Decode(&p)
		if len(p.Events) != 1 || !strings.Contains(string(p.Events[0].Event.Data), `"stage":"decode"`) {
			return fmt.Errorf("dead letters: %d", len(p.Events))
		}
		return nil
	})
}
