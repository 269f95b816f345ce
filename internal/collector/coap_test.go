package collector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

func freeUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	return c.LocalAddr().String()
}

func startCoAP(t *testing.T) (*testutil.Running, string) {
	t.Helper()
	addr := freeUDP(t)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Collector.WriteKeys = config.Strings{key}
		c.CoAP.Listen = addr
	})
	return r, addr
}

func keyOpt() message.Option {
	return message.Option{ID: message.URIQuery, Value: []byte("key=" + key)}
}

// go-coap's client: JSON and CBOR, confirmable and not, block-wise.
func TestCoAPClient(t *testing.T) {
	r, addr := startCoAP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	co, err := udp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = co.Close() }()
	post := func(path string, f message.MediaType, body []byte, opts ...message.Option) (codes.Code, string) {
		resp, err := co.Post(ctx, path, f, bytes.NewReader(body), opts...)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := resp.ReadBody()
		return resp.Code(), string(b)
	}
	if c, d := post("/track", message.AppJSON, []byte(`{"anonymousId":"dev-1","event":"Door Opened","messageId":"coap-1"}`), keyOpt()); c != codes.Changed {
		t.Fatalf("json track: %v %s", c, d)
	}
	cb, _ := cbor.Marshal(map[string]any{"anonymousId": "dev-1", "event": "Temp", "properties": map[string]any{"celsius": 21.5}, "messageId": "coap-2"})
	if c, d := post("/track", message.AppCBOR, cb, keyOpt()); c != codes.Changed {
		t.Fatalf("cbor track: %v %s", c, d)
	}
	// Non-confirmable.
	req, err := co.NewPostRequest(ctx, "/page", message.AppJSON, bytes.NewReader([]byte(`{"anonymousId":"dev-1","name":"Panel","messageId":"coap-3"}`)), keyOpt())
	if err != nil {
		t.Fatal(err)
	}
	req.SetType(message.NonConfirmable)
	resp, err := co.Do(req)
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("non-confirmable: %v %v", err, resp)
	}
	// Block-wise: a batch bigger than one CoAP block.
	var sb strings.Builder
	sb.WriteString(`{"batch":[`)
	for i := 0; i < 40; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"type":"track","anonymousId":"dev-2","event":"Tick","messageId":"blk-%d","properties":{"pad":"%s"}}`, i, strings.Repeat("x", 100))
	}
	sb.WriteString(`]}`)
	if c, d := post("/batch", message.AppJSON, []byte(sb.String()), keyOpt()); c != codes.Changed {
		t.Fatalf("block-wise batch (%d bytes): %v %s", sb.Len(), c, d)
	}
	// Bad input: diagnostic payloads.
	for name, c := range map[string]struct {
		path string
		f    message.MediaType
		body string
		opts []message.Option
		want codes.Code
	}{
		"no key":       {"/track", message.AppJSON, `{"anonymousId":"d","event":"E"}`, nil, codes.Unauthorized},
		"bad json":     {"/track", message.AppJSON, `{"anonymousId":`, []message.Option{keyOpt()}, codes.BadRequest},
		"bad cbor":     {"/track", message.AppCBOR, "\xff\xff", []message.Option{keyOpt()}, codes.BadRequest},
		"no event":     {"/track", message.AppJSON, `{"anonymousId":"d"}`, []message.Option{keyOpt()}, codes.BadRequest},
		"text payload": {"/track", message.TextPlain, `hi`, []message.Option{keyOpt()}, codes.UnsupportedMediaType},
		"too large":    {"/track", message.AppJSON, `{"anonymousId":"d","event":"E","p":"` + strings.Repeat("y", 33<<10) + `"}`, []message.Option{keyOpt()}, codes.RequestEntityTooLarge},
	} {
		if got, d := post(c.path, c.f, []byte(c.body), c.opts...); got != c.want || d == "" && got != codes.Changed {
			t.Errorf("%s: %v %q, want %v with a diagnostic", name, got, d, c.want)
		}
	}
	evs := waitTracked(t, r.URL, 43)
	var temp map[string]any
	for _, e := range evs {
		if e.Event.ID == "coap-2" {
			_ = json.Unmarshal(e.Event.Data, &temp)
		}
	}
	if temp["properties"].(map[string]any)["celsius"] != 21.5 {
		t.Fatalf("cbor event %v", temp)
	}
}

// libcoap's command-line client, unmodified, posts to Ops.
func TestCoAPWithLibcoap(t *testing.T) {
	bin, err := exec.LookPath("coap-client-notls")
	if err != nil {
		t.Fatal("no coap-client-notls: run `make test` (scripts/test-deps.sh installs Debian's libcoap3-bin)")
	}
	r, addr := startCoAP(t)
	_, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(bin, "-m", "post", "-t", "50", "-e", `{"anonymousId":"dev-9","event":"Button Pressed","messageId":"libcoap-1"}`,
		"coap://127.0.0.1:"+port+"/track?key="+key).CombinedOutput()
	if err != nil {
		t.Fatalf("coap-client: %v %s", err, out)
	}
	out, _ = exec.Command(bin, "-m", "post", "-t", "50", "-e", `{"event":"x"}`, "coap://127.0.0.1:"+port+"/track?key=wrong-key-123").CombinedOutput()
	if !strings.Contains(string(out), "4.01") {
		t.Errorf("wrong key: %s", out)
	}
	evs := waitTracked(t, r.URL, 1)
	if evs[0].Event.ID != "libcoap-1" {
		t.Fatalf("got %+v", evs[0].Event)
	}
}
