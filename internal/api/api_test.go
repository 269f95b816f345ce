package api_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/testutil"
)

func ce(id, typ string, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/test","type":%q,"data":%s}`, id, typ, data)
}

func post(t *testing.T, url, ct, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/api/v1/events", ct, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", url, err)
	}
	return resp.StatusCode
}

type page struct {
	Events []api.StoredEvent `json:"events"`
	Next   string            `json:"next"`
}

func readAll(t *testing.T, base, subject string) []api.StoredEvent {
	t.Helper()
	var all []api.StoredEvent
	since := ""
	for {
		u := base + "/api/v1/events?limit=1000&subject=" + subject
		if since != "" {
			u += "&since=" + since
		}
		var p page
		if code := getJSON(t, u, &p); code != 200 {
			t.Fatalf("GET %s: %d", u, code)
		}
		all = append(all, p.Events...)
		if len(p.Events) == 0 {
			return all
		}
		since = p.Next
	}
}

// The same API suite runs against the embedded bus and an external NATS.
func TestAPI(t *testing.T) {
	natsURL := testutil.NATSServer(t)
	for name, mod := range map[string]func(*config.Config){
		"embedded": nil,
		"external": func(c *config.Config) { c.Bus.URL = natsURL },
	} {
		t.Run(name, func(t *testing.T) {
			r := testutil.StartApp(t, []string{"all"}, mod)
			t.Run("publish and read", func(t *testing.T) { testPublishRead(t, r.URL) })
			t.Run("bad input", func(t *testing.T) { testBadInput(t, r.URL) })
			t.Run("dedup", func(t *testing.T) { testDedup(t, r.URL) })
			t.Run("tail", func(t *testing.T) { testTail(t, r.URL) })
			t.Run("ops endpoints", func(t *testing.T) { testOpsEndpoints(t, r.URL) })
			t.Run("invalid UTF-8", func(t *testing.T) { testInvalidUTF8(t, r.URL) })
			t.Run("since in the future", func(t *testing.T) { testSinceFuture(t, r.URL) })
		})
	}
}

// testInvalidUTF8: bytes that are not UTF-8 and lone surrogate escapes in
// data are stored as U+FFFD, so every page of events is UTF-8 JSON that a
// strict parser reads.
func testInvalidUTF8(t *testing.T, url string) {
	body := `{"specversion":"1.0","id":"utf8-1","source":"/t","type":"utf.bad","data":{"raw":"a` + "\xff\xfe" + `b","esc":"x\ud800y","pair":"\ud83d\ude00"}}`
	if code, b := post(t, url, event.ContentType, body); code != 200 {
		t.Fatalf("publish: %d %s", code, b)
	}
	resp, err := http.Get(url + "/api/v1/events?subject=ev.utf.bad")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !utf8.Valid(raw) || bytes.Contains(raw, []byte(`\ud800`)) {
		t.Fatalf("events page is not clean UTF-8 JSON: %q", raw)
	}
	var p page
	if err := json.Unmarshal(raw, &p); err != nil || len(p.Events) != 1 {
		t.Fatalf("%v %s", err, raw)
	}
	var d map[string]string
	_ = json.Unmarshal(p.Events[0].Event.Data, &d)
	if d["raw"] != "a\uFFFD\uFFFDb" || d["esc"] != "x\uFFFDy" || d["pair"] != "\U0001F600" {
		t.Fatalf("data %q", d)
	}
}

// testSinceFuture: a start time in the future reads nothing and continues
// past the end, never from the beginning; times the bus cannot hold are
// refused.
func testSinceFuture(t *testing.T, url string) {
	var p page
	if code := getJSON(t, url+"/api/v1/events?since=2030-01-01T00:00:00Z", &p); code != 200 || len(p.Events) != 0 {
		t.Fatalf("future since: %d %+v", code, p)
	}
	var st struct {
		Streams []struct {
			Name    string
			LastSeq uint64 `json:"last_seq"`
		}
	}
	getJSON(t, url+"/api/v1/streams", &st)
	var last uint64
	for _, s := range st.Streams {
		if s.Name == "EVENTS" {
			last = s.LastSeq
		}
	}
	if next, _ := strconv.ParseUint(p.Next, 10, 64); next <= last {
		t.Fatalf("next %q after a future since, want past the last sequence %d", p.Next, last)
	}
	// A filter nothing matches also continues past the end.
	getJSON(t, url+"/api/v1/events?subject=ev.nothing.here", &p)
	if next, _ := strconv.ParseUint(p.Next, 10, 64); next <= last {
		t.Fatalf("next %q for an empty filter, want past %d", p.Next, last)
	}
	var e api.ErrorBody
	for _, since := range []string{"2300-01-01T00:00:00Z", "1900-01-01T00:00:00Z"} {
		if code := getJSON(t, url+"/api/v1/events?since="+since, &e); code != 400 || e.Field != "since" {
			t.Errorf("since=%s: %d %+v", since, code, e)
		}
	}
}

func testPublishRead(t *testing.T, url string) {
	code, b := post(t, url, event.ContentType, ce("one-1", "shop.order", `{"total":12.5}`))
	if code != 200 {
		t.Fatalf("single: %d %s", code, b)
	}
	var res api.PublishResult
	if err := json.Unmarshal(b, &res); err != nil || res.Count != 1 || res.Events[0].Seq == 0 || res.Events[0].Subject != "ev.shop.order" {
		t.Fatalf("single result %s", b)
	}
	batch := "[" + ce("b-1", "shop.cart", `{"n":1}`) + "," + ce("b-2", "shop.cart", `{"n":2}`) + "," + ce("b-3", "shop.view", `{}`) + "]"
	code, b = post(t, url, event.BatchContentType, batch)
	if code != 200 {
		t.Fatalf("batch: %d %s", code, b)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Stored != 3 || res.Events[0].Seq != res.Events[1].Seq || res.Events[1].Index != 1 {
		t.Fatalf("batch result %s", b)
	}
	// application/json with an array is a batch too.
	if code, b := post(t, url, "application/json", "["+ce("j-1", "shop.cart", `{"n":3}`)+"]"); code != 200 {
		t.Fatalf("json array: %d %s", code, b)
	}
	carts := readAll(t, url, "ev.shop.cart")
	if len(carts) != 3 || carts[0].Event.ID != "b-1" || carts[2].Event.ID != "j-1" || string(carts[1].Event.Data) != `{"n":2}` {
		t.Fatalf("read carts: %+v", carts)
	}
	// CSV read.
	resp, err := http.Get(url + "/api/v1/events?subject=ev.shop.cart&format=csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil || len(rows) != 4 || rows[0][3] != "id" || rows[1][3] != "b-1" || rows[1][7] != `{"n":1}` {
		t.Fatalf("csv: %v %v", rows, err)
	}
	// since by time: nothing stored in the future.
	var p page
	getJSON(t, url+"/api/v1/events?since="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), &p)
	if len(p.Events) != 0 {
		t.Fatalf("since future: %d events", len(p.Events))
	}
}

func testBadInput(t *testing.T, url string) {
	big := ce("big", "a.b", `"`+strings.Repeat("x", 70<<10)+`"`)
	cases := []struct {
		name, ct, body string
		code           int
		field          string
	}{
		{"malformed json", event.ContentType, `{"specversion": "1.0",`, 400, ""},
		{"missing type", event.ContentType, `{"specversion":"1.0","id":"x","source":"s"}`, 400, "type"},
		{"missing type in batch", event.BatchContentType, "[" + ce("ok", "a.b", "1") + `,{"specversion":"1.0","id":"y","source":"s"}]`, 400, "events[1].type"},
		{"bad subject token", event.ContentType, ce("x", "a.b c", "1"), 400, "type"},
		{"wildcard subject", event.ContentType, ce("x", "a.>", "1"), 400, "type"},
		{"oversized event", event.ContentType, big, 413, "event"},
		{"wrong content type", "text/plain", ce("x", "a.b", "1"), 415, "Content-Type"},
		{"no content type", "", ce("x", "a.b", "1"), 415, "Content-Type"},
		{"array as single", event.ContentType, "[" + ce("x", "a.b", "1") + "]", 400, "body"},
		{"object as batch", event.BatchContentType, ce("x", "a.b", "1"), 400, ""},
		{"empty batch", event.BatchContentType, "[]", 400, "events"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", url+"/api/v1/events", strings.NewReader(c.body))
			if c.ct != "" {
				req.Header.Set("Content-Type", c.ct)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb api.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != c.code || eb.Field != c.field || eb.Error == "" {
				t.Fatalf("got %d field %q (%s), want %d field %q", resp.StatusCode, eb.Field, eb.Error, c.code, c.field)
			}
		})
	}
	// Nothing from the bad requests was stored, not even the valid first event.
	for _, e := range readAll(t, url, "ev.>") {
		if e.Event.ID == "ok" || e.Event.ID == "x" || e.Event.ID == "big" {
			t.Fatalf("bad request stored %s", e.Event.ID)
		}
	}
	for _, q := range []struct{ query, field string }{
		{"subject=foo.>", "subject"}, {"subject=ev..x", "subject"}, {"limit=0", "limit"},
		{"limit=abc", "limit"}, {"since=yesterday", "since"},
	} {
		var eb api.ErrorBody
		if code := getJSON(t, url+"/api/v1/events?"+q.query, &eb); code != 400 || eb.Field != q.field {
			t.Errorf("GET ?%s: %d field %q", q.query, code, eb.Field)
		}
	}
	// A body over http.max_body_bytes is refused with 413 naming the limit.
	huge := "[" + strings.Repeat(ce("h", "a.b", "1")+",", (10<<20)/60) + ce("h", "a.b", "1") + "]"
	if code, b := post(t, url, event.BatchContentType, huge); code != 413 || !bytes.Contains(b, []byte("max_body_bytes")) {
		t.Fatalf("huge body: %d %.200s", code, b)
	}
}

func testDedup(t *testing.T, url string) {
	one := ce("dup-1", "dedup.test", `{}`)
	var first, second api.PublishResult
	_, b := post(t, url, event.ContentType, one)
	if err := json.Unmarshal(b, &first); err != nil {
		t.Fatal(err)
	}
	_, b = post(t, url, event.ContentType, one)
	if err := json.Unmarshal(b, &second); err != nil {
		t.Fatal(err)
	}
	if first.Stored != 1 || second.Stored != 0 || second.Duplicates != 1 || second.Events[0].Seq != first.Events[0].Seq {
		t.Fatalf("first %+v second %+v", first, second)
	}
	// Re-sent inside a different batch: still once.
	if code, b := post(t, url, event.BatchContentType, "["+ce("dup-2", "dedup.test", "{}")+","+one+"]"); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	if n := len(readAll(t, url, "ev.dedup.>")); n != 2 {
		t.Fatalf("stored %d, want 2", n)
	}
}

func testTail(t *testing.T, url string) {
	req, _ := http.NewRequest("GET", url+"/api/v1/events/stream?subject=ev.tail.>", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	<-lines // the opening comment: the consumer may still be starting
	got := map[string]bool{}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		id := event.NewID()
		post(t, url, event.ContentType, ce(id, "tail.x", "{}"))
		post(t, url, event.ContentType, ce(event.NewID(), "other.x", "{}"))
		for {
			select {
			case l := <-lines:
				if d, ok := strings.CutPrefix(l, "data: "); ok {
					var s api.StoredEvent
					if err := json.Unmarshal([]byte(d), &s); err != nil {
						return fmt.Errorf("tail data %q: %v", d, err)
					}
					if s.Subject != "ev.tail.x" {
						return fmt.Errorf("tailed %s, outside the filter", s.Subject)
					}
					got[s.Event.ID] = true
					if got[id] {
						return nil
					}
				}
			case <-time.After(200 * time.Millisecond):
				return fmt.Errorf("no event yet")
			}
		}
	})
}

func testOpsEndpoints(t *testing.T, url string) {
	var ready struct {
		Status  string `json:"status"`
		Modules []struct{ Name, State string }
	}
	if code := getJSON(t, url+"/readyz", &ready); code != 200 || ready.Status != "ready" || len(ready.Modules) != 13 || ready.Modules[0].Name != "bus" || ready.Modules[1].State != "running" {
		t.Fatalf("readyz %d %+v", code, ready)
	}
	var st api.Status
	getJSON(t, url+"/api/v1/status", &st)
	if st.Version == "" || st.ConfigHash == "" || st.Uptime <= 0 || st.StartedAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	var streams struct {
		Streams []struct {
			Name     string
			Messages uint64
		}
	}
	getJSON(t, url+"/api/v1/streams", &streams)
	names := map[string]bool{}
	for _, s := range streams.Streams {
		names[s.Name] = true
	}
	if !names["EVENTS"] || !names["AGG"] {
		t.Fatalf("streams %+v", streams)
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"ops_bus_events_published_total", `ops_http_requests_total{code="200",route="POST /api/v1/events"}`, "go_goroutines"} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	put := func(body string) int {
		req, _ := http.NewRequest("PUT", url+"/api/v1/log-level", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := put(`{"module":"bus","level":"warn"}`); c != 200 {
		t.Fatalf("log-level: %d", c)
	}
	if c := put(`{"module":"bus","level":"loud"}`); c != 400 {
		t.Fatalf("bad log-level: %d", c)
	}
	// A module nobody logs as is refused, not quietly added.
	req, _ := http.NewRequest("PUT", url+"/api/v1/log-level", strings.NewReader(`{"module":"buss","level":"debug"}`))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var unknown api.ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&unknown)
	resp.Body.Close()
	if resp.StatusCode != 400 || unknown.Field != "module" || !strings.Contains(unknown.Error, "bus") {
		t.Fatalf("unknown module: %d %+v", resp.StatusCode, unknown)
	}
	var lv struct {
		Levels []struct{ Module, Level string }
	}
	getJSON(t, url+"/api/v1/log-level", &lv)
	found := false
	for _, l := range lv.Levels {
		found = found || (l.Module == "bus" && l.Level == "warn")
	}
	if !found {
		t.Fatalf("levels %+v", lv)
	}
	var eb api.ErrorBody
	if code := getJSON(t, url+"/api/v1/nope", &eb); code != 404 || eb.Error == "" {
		t.Fatalf("unknown route %d %+v", code, eb)
	}
}

// Persistence: 10,000 events through the API survive a stop and start.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	mod := func(c *config.Config) { c.DataDir = dir }
	r := testutil.StartApp(t, []string{"all"}, mod)
	ids := map[string]bool{}
	for b := 0; b < 100; b++ {
		var sb strings.Builder
		sb.WriteByte('[')
		for i := 0; i < 100; i++ {
			id := event.NewID()
			ids[id] = true
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(ce(id, fmt.Sprintf("persist.t%d", i%3), fmt.Sprintf(`{"b":%d,"i":%d}`, b, i)))
		}
		sb.WriteByte(']')
		if code, body := post(t, r.URL, event.BatchContentType, sb.String()); code != 200 {
			t.Fatalf("batch %d: %d %s", b, code, body)
		}
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r2 := testutil.StartApp(t, []string{"all"}, mod)
	all := readAll(t, r2.URL, "ev.persist.>")
	seen := map[string]bool{}
	for _, e := range all {
		if seen[e.Event.ID] {
			t.Fatalf("duplicate %s", e.Event.ID)
		}
		if !ids[e.Event.ID] {
			t.Fatalf("unknown %s", e.Event.ID)
		}
		seen[e.Event.ID] = true
	}
	if len(seen) != len(ids) {
		t.Fatalf("read back %d of %d", len(seen), len(ids))
	}
}

// Targets: --target=bus starts the bus alone; unknown targets are refused.
func TestTargets(t *testing.T) {
	c := config.Default()
	c.DataDir = t.TempDir()
	_ = c
	r := testutil.StartApp(t, []string{"api"}, nil)
	var ready struct{ Modules []struct{ Name string } }
	getJSON(t, r.URL+"/readyz", &ready)
	if len(ready.Modules) != 3 || ready.Modules[0].Name != "bus" || ready.Modules[1].Name != "identity" {
		t.Fatalf("target api should pull in bus and identity: %+v", ready)
	}
}

// When the bus goes away, writes answer 503 with Retry-After and readiness
// fails; when it comes back, writes succeed again and nothing was half-stored.
func TestBusOutageAnswers503(t *testing.T) {
	nats := testutil.StartNATS(t, "")
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Bus.URL = nats.URL
		c.Bus.PublishTimeout = config.Duration(time.Second)
	})
	if code, b := post(t, r.URL, event.ContentType, ce("before", "outage.x", "1")); code != 200 {
		t.Fatalf("before outage: %d %s", code, b)
	}
	nats.Stop()
	resp, err := http.Post(r.URL+"/api/v1/events", event.ContentType, strings.NewReader(ce("during", "outage.x", "2")))
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || eb.Error == "" {
		t.Fatalf("during outage: %d %+v", resp.StatusCode, eb)
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(r.URL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			return fmt.Errorf("readyz %d during outage", resp.StatusCode)
		}
		return nil
	})
	nats.Restart(t)
	testutil.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if code, b := post(t, r.URL, event.ContentType, ce("during", "outage.x", "2")); code != 200 {
			return fmt.Errorf("after outage: %d %s", code, b)
		}
		return nil
	})
	got := readAll(t, r.URL, "ev.outage.>")
	if len(got) != 2 || got[0].Event.ID != "before" || got[1].Event.ID != "during" {
		t.Fatalf("after outage: %+v", got)
	}
}
