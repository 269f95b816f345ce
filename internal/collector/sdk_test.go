package collector_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/testutil"
)

// TestNodeSDKs drives the unmodified RudderStack (@rudderstack/rudder-sdk-node
// 3.x: gzip on, Content-Type application/x-www-form-urlencoded as axios sets
// it for a Buffer) and Segment (@segment/analytics-node) Node SDKs against
// Ops, from testdata/node (npm ci with its lock file, by make test).
func TestNodeSDKs(t *testing.T) {
	node, err := exec.LookPath("node")
	testutil.Require(t, err == nil, "node", "apt-get install --no-install-recommends nodejs npm")
	dir, _ := filepath.Abs("testdata/node")
	_, err = os.Stat(filepath.Join(dir, "node_modules", "@rudderstack", "rudder-sdk-node"))
	testutil.Require(t, err == nil, "the Node SDKs in "+dir, "npm ci --ignore-scripts --prefix "+dir)
	r := start(t)
	cmd := exec.Command(node, "sdks.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OPS_URL="+r.URL, "WRITE_KEY="+key, "RUN=n1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node sdks.js: %v\n%s", err, out)
	}
	evs := waitTracked(t, r.URL, 10)
	got := map[string]int{}
	for _, e := range evs {
		var d struct {
			UserID     string `json:"userId"`
			Event      string
			Properties struct{ SDK, Run string }
		}
		_ = json.Unmarshal(e.Event.Data, &d)
		got[e.Subject+" "+d.UserID]++
	}
	for _, sdk := range []string{"rudder", "segment"} {
		u := sdk + "-n1"
		if got["ev.track.identify "+u] != 1 || got["ev.track.track "+u] != 3 || got["ev.track.page "+u] != 1 {
			t.Errorf("%s SDK: stored %v", sdk, got)
		}
	}
}

// TestSDKRequestShapes replays the request shapes of SDKs that cannot be
// installed here (they are not run for real; their documented shapes
// are): analytics-python and rudder-sdk-python (application/json), the
// Segment and RudderStack browser SDKs' beacons (text/plain), the iOS and
// Android SDKs (gzip'd JSON), and RudderStack's Node SDK's own
// (x-www-form-urlencoded with gzip'd JSON).
func TestSDKRequestShapes(t *testing.T) {
	r := start(t)
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.Bytes()
	}
	batch := func(user string) string {
		return fmt.Sprintf(`{"batch":[{"type":"track","event":"Shape","userId":%q,"messageId":"m-%s"}]}`, user, user)
	}
	for _, c := range []struct {
		name, ct, enc string
		body          []byte
	}{
		{"python", "application/json", "", []byte(batch("python"))},
		{"beacon", "text/plain;charset=UTF-8", "", []byte(batch("beacon"))},
		{"ios", "application/json", "gzip", gz(batch("ios"))},
		{"android", "application/json; charset=utf-8", "gzip", gz(batch("android"))},
		{"rudder-node", "application/x-www-form-urlencoded", "gzip", gz(batch("rudder-node"))},
		{"no content type", "", "", []byte(batch("none"))},
	} {
		req, _ := http.NewRequest("POST", r.URL+"/v1/batch", bytes.NewReader(c.body))
		req.SetBasicAuth(key, "")
		if c.ct != "" {
			req.Header.Set("Content-Type", c.ct)
		}
		if c.enc != "" {
			req.Header.Set("Content-Encoding", c.enc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", c.name, resp.StatusCode)
		}
	}
	// A body that is not JSON is refused whatever its type says.
	req, _ := http.NewRequest("POST", r.URL+"/v1/batch", strings.NewReader("a=1&b=2"))
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error, Field string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 400 || e.Field == "" {
		t.Errorf("form body: %d %+v", resp.StatusCode, e)
	}
	waitTracked(t, r.URL, 6)
}
