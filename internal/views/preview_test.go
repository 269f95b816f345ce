package views_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/testutil"
)

func post(t *testing.T, u, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(u, "application/yaml", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %s", u, b)
	}
	return resp.StatusCode, out
}

// TestPreview: the editor's previews run a processor and a view over the
// latest events of their subjects, with the running code, and store
// nothing.
func TestPreview(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	var evs []string
	for i, sku := range []string{"apple", "pear", "apple", "fig", "apple"} {
		evs = append(evs, fmt.Sprintf(`{"specversion":"1.0","id":"o%d","type":"shop.order","source":"t","data":{"sku":%q,"price":%d}}`, i, sku, 10*(i+1)))
	}
	evs = append(evs, `{"specversion":"1.0","id":"x","type":"shop.other","source":"t","data":{}}`)
	resp, err := http.Post(r.URL+"/api/v1/events", "application/cloudevents-batch+json", strings.NewReader("["+strings.Join(evs, ",")+"]"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(err, resp)
	}
	resp.Body.Close()

	// A processor: the last 4 orders (pear, apple, fig, apple); fig is
	// filtered out.
	code, out := post(t, r.URL+"/api/v1/processors/preview?limit=4", "from: [ev.shop.order]\nwhere: this.data.sku != \"fig\"\nmap: 'root.item = this.data.sku.uppercase()'\nto: ev.shop.item\n")
	if code != 200 {
		t.Fatalf("processor preview: %d %v", code, out)
	}
	items := out["items"].([]any)
	var got []string
	for _, it := range items {
		m := it.(map[string]any)
		switch {
		case m["skipped"] == true:
			got = append(got, "skip")
		default:
			got = append(got, fmt.Sprint(m["output"].(map[string]any)["item"], "@", m["to"]))
		}
	}
	if want := "[PEAR@ev.shop.item APPLE@ev.shop.item skip APPLE@ev.shop.item]"; fmt.Sprint(got) != want {
		t.Fatalf("processor preview %v, want %s", got, want)
	}
	// A mapping error is shown per event, not as a failure of the request.
	code, out = post(t, r.URL+"/api/v1/processors/preview?limit=1", "from: [ev.shop.order]\nmap: 'root = this.data.price.number() / 0'\nto: ev.shop.x\n")
	if code != 200 || out["items"].([]any)[0].(map[string]any)["stage"] != "map" {
		t.Fatalf("failing map: %d %v", code, out)
	}

	// A view: the whole sample folded with the view code.
	code, out = post(t, r.URL+"/api/v1/views/preview?limit=50", `{"from":["ev.shop.order"],"key":{"sku":"this.data.sku"},"measures":{"n":"count","revenue":"sum(this.data.price)","top":"max(this.data.price)"}}`)
	if code != 200 {
		t.Fatalf("view preview: %d %v", code, out)
	}
	rows := map[string]string{}
	for _, rw := range out["rows"].([]any) {
		m := rw.(map[string]any)
		v := m["values"].(map[string]any)
		rows[m["key"].(map[string]any)["sku"].(string)] = fmt.Sprint(v["n"], " ", v["revenue"], " ", v["top"])
	}
	if want := "map[apple:3 90 50 fig:1 40 40 pear:1 20 20]"; fmt.Sprint(rows) != want {
		t.Fatalf("view preview rows %v, want %s", rows, want)
	}

	// Bad input names the field; nothing was created.
	for body, field := range map[string]string{
		"from: [ev.shop.order]\nmap: 'root = this.'\nto: ev.x\n": "map",
		"from: [nope]\nto: ev.x\n":                               "from",
	} {
		code, out := post(t, r.URL+"/api/v1/processors/preview", body)
		if code != 400 || !strings.Contains(fmt.Sprint(out["field"]), field) {
			t.Fatalf("%q: %d %v", body, code, out)
		}
	}
	if code, out := post(t, r.URL+"/api/v1/views/preview?limit=999", `{"from":["ev.shop.order"],"key":{"k":"this.id"},"measures":{"n":"count"}}`); code != 400 || out["field"] != "limit" {
		t.Fatalf("limit: %d %v", code, out)
	}
	var procs struct{ Processors []any }
	getJSONT(t, r.URL+"/api/v1/processors", &procs)
	var views struct{ Views []any }
	getJSONT(t, r.URL+"/api/v1/views", &views)
	var stored struct{ Events []any }
	getJSONT(t, r.URL+"/api/v1/events?subject=ev.shop.item", &stored)
	if len(procs.Processors) != 0 || len(views.Views) != 0 || len(stored.Events) != 0 {
		t.Fatalf("a preview left something behind: %d processors, %d views, %d events", len(procs.Processors), len(views.Views), len(stored.Events))
	}

	// A viewer may not preview: it needs graph:write (and events:read).
	resp, err = http.Post(r.URL+"/api/v1/tokens", "application/json", strings.NewReader(`{"name":"v","role":"viewer"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequest("POST", r.URL+"/api/v1/views/preview", strings.NewReader(`{"from":["ev.shop.order"],"key":{"k":"this.id"},"measures":{"n":"count"}}`))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err = testutil.Anonymous.Do(req)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("viewer preview: %v %v", err, resp)
	}
	resp.Body.Close()
}

func getJSONT(t *testing.T, u string, out any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}
