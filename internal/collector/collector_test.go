package collector_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	rudder "github.com/rudderlabs/analytics-go/v4"
	segment "github.com/segmentio/analytics-go/v3"

	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

const key = "wk_test_0123456789"

func start(t *testing.T) *testutil.Running {
	t.Helper()
	return testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Collector.WriteKeys = config.Strings{key}
		c.Collector.CORSOrigins = config.Strings{"https://shop.example"}
	})
}

func tracked(t *testing.T, url string) []api.StoredEvent {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/events?subject=ev.track.>&limit=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Events []api.StoredEvent }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p.Events
}

func waitTracked(t *testing.T, url string, n int) []api.StoredEvent {
	t.Helper()
	var evs []api.StoredEvent
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		evs = tracked(t, url)
		if len(evs) < n {
			return fmt.Errorf("%d of %d events", len(evs), n)
		}
		return nil
	})
	return evs
}

// The unmodified Segment and RudderStack Go SDKs send through Ops.
func TestUnmodifiedSDKs(t *testing.T) {
	r := start(t)
	seg, err := segment.NewWithConfig(key, segment.Config{Endpoint: r.URL, BatchSize: 10, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	props := segment.NewProperties().Set("revenue", 12.5)
	for _, m := range []segment.Message{
		segment.Track{MessageId: "seg-1", UserId: "u1", Event: "Order Completed", Properties: props},
		segment.Identify{MessageId: "seg-2", UserId: "u1", Traits: segment.NewTraits().SetEmail("ann@example.com")},
		segment.Page{MessageId: "seg-3", AnonymousId: "a1", Name: "Pricing"},
		segment.Group{MessageId: "seg-4", UserId: "u1", GroupId: "g1"},
		segment.Alias{MessageId: "seg-5", PreviousId: "a1", UserId: "u1"},
	} {
		if err := seg.Enqueue(m); err != nil {
			t.Fatal(err)
		}
	}
	seg.Close()

	rud, err := rudder.NewWithConfig(key, rudder.Config{DataPlaneUrl: r.URL, BatchSize: 10, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []rudder.Message{
		rudder.Track{MessageId: "rud-1", UserId: "u2", Event: "Signed Up"},
		rudder.Identify{MessageId: "rud-2", UserId: "u2"},
		rudder.Page{MessageId: "rud-3", AnonymousId: "a2", Name: "Home"},
		rudder.Group{MessageId: "rud-4", UserId: "u2", GroupId: "g2"},
		rudder.Alias{MessageId: "rud-5", PreviousId: "a2", UserId: "u2"},
	} {
		if err := rud.Enqueue(m); err != nil {
			t.Fatal(err)
		}
	}
	rud.Close()

	evs := waitTracked(t, r.URL, 10)
	byID := map[string]api.StoredEvent{}
	for _, e := range evs {
		if _, dup := byID[e.Event.ID]; dup {
			t.Fatalf("%s arrived twice", e.Event.ID)
		}
		byID[e.Event.ID] = e
	}
	if len(byID) != 10 {
		t.Fatalf("%d distinct events", len(byID))
	}
	for id, subj := range map[string]string{"seg-1": "ev.track.track", "seg-2": "ev.track.identify", "seg-3": "ev.track.page",
		"seg-4": "ev.track.group", "seg-5": "ev.track.alias", "rud-1": "ev.track.track", "rud-5": "ev.track.alias"} {
		if byID[id].Subject != subj {
			t.Errorf("%s on %s, want %s", id, byID[id].Subject, subj)
		}
	}
	var d map[string]any
	_ = json.Unmarshal(byID["seg-1"].Event.Data, &d)
	if d["event"] != "Order Completed" || d["properties"].(map[string]any)["revenue"] != 12.5 || d["receivedAt"] == nil {
		t.Fatalf("seg-1 data %v", d)
	}
	// Timestamps: the SDKs' clocks are this machine's, so the corrected time
	// is within a few seconds of now.
	for _, e := range evs {
		if d := time.Since(e.Event.Time); d < 0 || d > time.Minute {
			t.Errorf("%s time %v is off by %v", e.Event.ID, e.Event.Time, d)
		}
	}
	if byID["seg-1"].Event.Subject != "Order Completed" || byID["seg-1"].Event.Extensions["userid"] != "u1" {
		t.Errorf("seg-1 attributes %+v", byID["seg-1"].Event)
	}
}

func post(t *testing.T, url, path, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestTimestampCorrectionAndBatchContext(t *testing.T) {
	r := start(t)
	// The client's clock is 1 hour fast: it sent at 13:00 by its clock an
	// event it made at 12:59:50. Ops corrects by receivedAt - sentAt.
	body := fmt.Sprintf(`{"writeKey":%q,"sentAt":"2030-01-01T13:00:00Z","context":{"library":{"name":"x"},"app":"shop"},
	"batch":[{"type":"track","event":"E","anonymousId":"a","messageId":"ts-1","originalTimestamp":"2030-01-01T12:59:50Z","context":{"app":"override"}}]}`, key)
	before := time.Now()
	if code, m := post(t, r.URL, "/v1/batch", body, nil); code != 200 || m["success"] != true {
		t.Fatalf("batch: %d %v", code, m)
	}
	e := waitTracked(t, r.URL, 1)[0]
	want := before.Add(-10 * time.Second)
	if d := e.Event.Time.Sub(want); d < -2*time.Second || d > 2*time.Second {
		t.Fatalf("corrected time %v, want about %v", e.Event.Time, want)
	}
	var d map[string]any
	_ = json.Unmarshal(e.Event.Data, &d)
	ctx := d["context"].(map[string]any)
	if ctx["app"] != "override" || ctx["library"] == nil || d["originalTimestamp"] != "2030-01-01T12:59:50Z" {
		t.Fatalf("context merge / fields: %v", d)
	}
}

func TestGzipCORSAndPixel(t *testing.T) {
	r := start(t)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	fmt.Fprintf(gz, `{"batch":[{"type":"page","name":"Home","anonymousId":"a9","messageId":"gz-1"}]}`)
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", r.URL+"/v1/batch", &buf)
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Origin", "https://shop.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Fatalf("gzip batch: %d %v", resp.StatusCode, resp.Header)
	}
	// Preflight for an allowed and a foreign origin.
	for origin, want := range map[string]string{"https://shop.example": "https://shop.example", "https://evil.example": ""} {
		req, _ := http.NewRequest("OPTIONS", r.URL+"/v1/t", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != want {
			t.Errorf("preflight %s: %d %q", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	// Pixel.
	resp, err = http.Get(r.URL + "/pixel/v1/track?writeKey=" + key + "&anonymousId=p1&event=Email%20Opened&messageId=px-1&properties.campaign=nov")
	if err != nil {
		t.Fatal(err)
	}
	img, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || !bytes.HasPrefix(img, []byte("GIF89a")) {
		t.Fatalf("pixel: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for q, want := range map[string]int{"writeKey=wrong-key-123&anonymousId=p&event=E": 401, "writeKey=" + key + "&event=E": 400} {
		resp, err := http.Get(r.URL + "/pixel/v1/track?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("Content-Type") != "image/gif" {
			t.Errorf("pixel %s: %d %s", q, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	evs := waitTracked(t, r.URL, 2)
	var px map[string]any
	for _, e := range evs {
		if e.Event.ID == "px-1" {
			_ = json.Unmarshal(e.Event.Data, &px)
		}
	}
	if px["event"] != "Email Opened" || px["properties"].(map[string]any)["campaign"] != "nov" {
		t.Fatalf("pixel event %v", px)
	}
	// A retried message is stored once.
	for i := 0; i < 2; i++ {
		if code, _ := post(t, r.URL, "/v1/track", `{"userId":"u","event":"E","messageId":"dup-1"}`, map[string]string{"Authorization": basic()}); code != 200 {
			t.Fatalf("track %d", code)
		}
	}
	n := 0
	for _, e := range tracked(t, r.URL) {
		if e.Event.ID == "dup-1" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("dup-1 stored %d times", n)
	}
}

func basic() string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(key, "")
	return req.Header.Get("Authorization")
}

func TestBadInput(t *testing.T) {
	r := start(t)
	auth := map[string]string{"Authorization": basic()}
	big := `{"userId":"u","event":"E","properties":{"x":"` + strings.Repeat("y", 33<<10) + `"}}`
	var bigBatch strings.Builder
	bigBatch.WriteString(`{"batch":[`)
	for i := 0; i < 40; i++ {
		if i > 0 {
			bigBatch.WriteByte(',')
		}
		fmt.Fprintf(&bigBatch, `{"type":"track","userId":"u","event":"E","properties":{"x":"%s"}}`, strings.Repeat("z", 15<<10))
	}
	bigBatch.WriteString(`]}`)
	for _, c := range []struct {
		name, path, body string
		hdr              map[string]string
		code             int
		field            string
	}{
		{"no key", "/v1/track", `{"userId":"u","event":"E"}`, nil, 401, "writeKey"},
		{"wrong key", "/v1/track", `{"userId":"u","event":"E","writeKey":"nope-nope-nope"}`, nil, 401, "writeKey"},
		{"malformed", "/v1/track", `{"userId":`, auth, 400, "body"},
		{"no ids", "/v1/track", `{"event":"E"}`, auth, 400, "userId"},
		{"no event", "/v1/track", `{"userId":"u"}`, auth, 400, "event"},
		{"alias without previousId", "/v1/alias", `{"userId":"u"}`, auth, 400, "previousId"},
		{"group without groupId", "/v1/group", `{"userId":"u"}`, auth, 400, "groupId"},
		{"bad timestamp", "/v1/track", `{"userId":"u","event":"E","timestamp":"yesterday"}`, auth, 400, "timestamp"},
		{"type mismatch", "/v1/track", `{"type":"page","userId":"u","event":"E"}`, auth, 400, "type"},
		{"batch item without type", "/v1/batch", `{"batch":[{"userId":"u","event":"E"}]}`, auth, 400, "batch[0].type"},
		{"batch bad item", "/v1/batch", `{"batch":[{"type":"track","userId":"u","event":"E"},{"type":"track","userId":"u"}]}`, auth, 400, "batch[1].event"},
		{"empty batch", "/v1/batch", `{"batch":[]}`, auth, 400, "batch"},
		{"batch not a list", "/v1/batch", `{"batch":{}}`, auth, 400, "batch"},
		{"event over 32KB", "/v1/track", big, auth, 413, "body"},
		{"batch over 500KB", "/v1/batch", bigBatch.String(), auth, 413, "body"},
		{"bad gzip", "/v1/batch", "not gzip at all", map[string]string{"Authorization": basic(), "Content-Encoding": "gzip"}, 400, "Content-Encoding"},
		// Any content type is taken (as the gateways do); the body must be JSON.
		{"xml body", "/v1/track", `<track userId="u"/>`, map[string]string{"Authorization": basic(), "Content-Type": "application/xml"}, 400, "body"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, m := post(t, r.URL, c.path, c.body, c.hdr)
			if code != c.code || m["field"] != c.field {
				t.Fatalf("%d %v, want %d field %q", code, m, c.code, c.field)
			}
		})
	}
	if n := len(tracked(t, r.URL)); n != 0 {
		t.Fatalf("bad requests stored %d events", n)
	}
}

// Write keys created through the API work at once, are listed without the
// key itself, and stop working when deleted.
func TestWriteKeysThroughTheAPI(t *testing.T) {
	r := start(t)
	code, m := post(t, r.URL, "/api/v1/keys", `{"name":"mobile app"}`, nil)
	newKey, _ := m["key"].(string)
	if code != 201 || !strings.HasPrefix(newKey, "wk_") {
		t.Fatalf("create: %d %v", code, m)
	}
	id := m["info"].(map[string]any)["id"].(string)
	track := func() int {
		req, _ := http.NewRequest("POST", r.URL+"/v1/track", strings.NewReader(`{"userId":"u","event":"E"}`))
		req.SetBasicAuth(newKey, "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := track(); c != 200 {
		t.Fatalf("track with the new key: %d", c)
	}
	resp, _ := http.Get(r.URL + "/api/v1/keys")
	var list struct{ Keys []map[string]any }
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Keys) != 1 || list.Keys[0]["name"] != "mobile app" || strings.Contains(fmt.Sprint(list.Keys), newKey) {
		t.Fatalf("list: %v", list)
	}
	req, _ := http.NewRequest("DELETE", r.URL+"/api/v1/keys/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("delete: %v %v", err, resp)
	}
	resp.Body.Close()
	if c := track(); c != 401 {
		t.Fatalf("track with a deleted key: %d", c)
	}
	if code, m := post(t, r.URL, "/api/v1/keys", `{"name":""}`, nil); code != 400 || m["field"] != "name" {
		t.Fatalf("bad name: %d %v", code, m)
	}
}
