package views_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/testutil"
)

func send(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// Processors and views created, changed and deleted through the API; they
// survive a restart; the file's nodes are read-only.
func TestGraphThroughTheAPI(t *testing.T) {
	dir := t.TempDir()
	r := startGraph(t, dir)
	// A view in JSON, a processor in YAML.
	code, m := send(t, "PUT", r.URL+"/api/v1/views/hits", `{"from": "ev.api.hit", "key": {"page": "this.data.page"}, "measures": {"n": "count"}}`)
	if code != 201 {
		t.Fatalf("put view: %d %v", code, m)
	}
	code, m = send(t, "PUT", r.URL+"/api/v1/processors/tag", "from: ev.api.raw\nmap: |\n  root.page = this.data.p\nto: ev.api.hit\n")
	if code != 201 {
		t.Fatalf("put processor: %d %v", code, m)
	}
	publish(t, r.URL, ev("h1", "api.raw", "", `{"p":"/a"}`), ev("h2", "api.raw", "", `{"p":"/a"}`), ev("h3", "api.hit", "", `{"page":"/b"}`))
	waitRows(t, r.URL, "hits", "sort=page", func(r result) error {
		if r.Total != 2 || r.Rows[0].Values["n"] != 2.0 || r.Rows[1].Values["n"] != 1.0 {
			return fmt.Errorf("hits %+v", r.Rows)
		}
		return nil
	})
	// Errors: cycle, bad Bloblang, file nodes read-only, name mismatch.
	for _, c := range []struct {
		method, path, body string
		code               int
		field, msg         string
	}{
		{"PUT", "/api/v1/processors/loop", "from: ev.api.hit\nto: ev.api.raw\n", 400, "processors[3]", "cycle: processor tag -> processor loop -> processor tag"},
		{"PUT", "/api/v1/processors/bad", "from: ev.api.raw\nmap: root = this.(\nto: ev.api.x\n", 400, "processors[4].map", ""},
		{"PUT", "/api/v1/processors/bad", "from: ev.api.raw\nto: ev.api.x\nwhatever: 1\n", 400, "whatever", "unknown key"},
		{"PUT", "/api/v1/processors/strict", "from: ev.a\nto: ev.b\n", 409, "name", "read-only"},
		{"PUT", "/api/v1/views/customer", `{"from":"ev.a","key":"this.x","measures":{"n":"count"}}`, 409, "name", "read-only"},
		{"PUT", "/api/v1/views/other", `{"name":"different","from":"ev.a","key":"this.x","measures":{"n":"count"}}`, 400, "name", ""},
		{"DELETE", "/api/v1/views/customer", "", 409, "name", ""},
		{"DELETE", "/api/v1/processors/nope", "", 404, "name", ""},
	} {
		code, m := send(t, c.method, r.URL+c.path, c.body)
		if code != c.code || m["field"] != c.field || !strings.Contains(fmt.Sprint(m["error"]), c.msg) {
			t.Errorf("%s %s: %d %v", c.method, c.path, code, m)
		}
	}
	var g struct{ Nodes []struct{ Name string } }
	resp, _ := http.Get(r.URL + "/api/v1/graph")
	_ = json.NewDecoder(resp.Body).Decode(&g)
	resp.Body.Close()
	names := fmt.Sprint(g.Nodes)
	if !strings.Contains(names, "{tag}") || !strings.Contains(names, "{hits}") {
		t.Fatalf("graph lacks API nodes: %s", names)
	}

	// Restart: the API's nodes are still there and still fold.
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r = startGraph(t, dir)
	publish(t, r.URL, ev("h4", "api.raw", "", `{"p":"/a"}`))
	waitRows(t, r.URL, "hits", "key.page=/a", func(r result) error {
		if len(r.Rows) != 1 || r.Rows[0].Values["n"] != 3.0 {
			return fmt.Errorf("after restart %+v", r.Rows)
		}
		return nil
	})
	// Change the processor: new events take the new mapping.
	if code, m := send(t, "PUT", r.URL+"/api/v1/processors/tag", "from: ev.api.raw\nmap: |\n  root.page = this.data.p.uppercase()\nto: ev.api.hit\n"); code != 200 {
		t.Fatalf("replace processor: %d %v", code, m)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		publish(t, r.URL, ev(fmt.Sprint("h5-", time.Now().UnixNano()), "api.raw", "", `{"p":"/c"}`))
		if got := rows(t, r.URL, "hits", "key.page=/C"); len(got.Rows) == 0 {
			return fmt.Errorf("no /C row yet")
		}
		return nil
	})
	// Delete both.
	if code, _ := send(t, "DELETE", r.URL+"/api/v1/processors/tag", ""); code != 204 {
		t.Fatalf("delete processor: %d", code)
	}
	if code, _ := send(t, "DELETE", r.URL+"/api/v1/views/hits", ""); code != 204 {
		t.Fatalf("delete view: %d", code)
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		resp, _ := http.Get(r.URL + "/api/v1/views/hits")
		resp.Body.Close()
		if resp.StatusCode != 404 {
			return fmt.Errorf("view still answers %d", resp.StatusCode)
		}
		var ps struct{ Processors []struct{ Name string } }
		resp, _ = http.Get(r.URL + "/api/v1/processors")
		_ = json.NewDecoder(resp.Body).Decode(&ps)
		resp.Body.Close()
		for _, p := range ps.Processors {
			if p.Name == "tag" {
				return fmt.Errorf("processor still running")
			}
		}
		return nil
	})
}
