package collector

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"

	"github.com/opsgraph/ops/internal/event"
)

// FuzzNormalize feeds arbitrary tracking messages through validation and
// normalization: never a panic, and whatever is accepted is a valid event
// with JSON data that keeps the message's identity.
func FuzzNormalize(f *testing.F) {
	f.Add([]byte(`{"type":"track","userId":"u","event":"E","properties":{"a":1}}`), "")
	f.Add([]byte(`{"anonymousId":"a","originalTimestamp":"2026-01-01T00:00:00Z","sentAt":"2026-01-01T00:00:05Z"}`), "page")
	f.Add([]byte(`{"type":"alias","userId":1,"previousId":"p","context":{"ip":"1.2.3.4"}}`), "")
	f.Add([]byte(`{"userId":"u","groupId":"g","timestamp":"2026-01-01T00:00:00.123+02:00"}`), "group")
	f.Fuzz(func(t *testing.T, raw []byte, typ string) {
		n := &normalizer{receivedAt: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), maxBytes: 32 << 10,
			context: map[string]any{"library": "x"}, sentAt: time.Date(2026, 11, 27, 12, 0, 1, 0, time.UTC)}
		e, err := n.normalize(raw, typ, 0)
		if err != nil {
			if fe, ok := err.(*FieldError); !ok || fe.Msg == "" {
				t.Fatalf("error without a message: %v", err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted message makes an invalid event: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(e.Data, &m); err != nil {
			t.Fatalf("data is not JSON: %v", err)
		}
		if m["messageId"] != e.ID || !Types[m["type"].(string)] || m["receivedAt"] == nil {
			t.Fatalf("normalized message lost its identity: %v", m)
		}
	})
}

// FuzzOTLP decodes arbitrary bytes as OTLP protobuf and JSON requests of all
// three signals and maps what decodes: never a panic, and every event made
// is valid.
func FuzzOTLP(f *testing.F) {
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"x"}]}]}]}`))
	f.Add([]byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","sum":{"dataPoints":[{"asInt":"3"}],"isMonotonic":true}}]}]}]}`))
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}`))
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, isJSON := range []bool{true, false} {
			var tr coltrace.ExportTraceServiceRequest
			if decodeOTLP(b, isJSON, &tr) == nil {
				evs, _, _ := spanEvents(&tr, isJSON)
				checkAll(t, evs)
			}
			var lg collogs.ExportLogsServiceRequest
			if decodeOTLP(b, isJSON, &lg) == nil {
				checkAll(t, logEvents(&lg, isJSON))
			}
			var mt colmetrics.ExportMetricsServiceRequest
			if decodeOTLP(b, isJSON, &mt) == nil {
				evs, _ := metricEvents(&mt)
				checkAll(t, evs)
			}
		}
	})
}

func checkAll(t *testing.T, evs []event.Event) {
	for _, e := range evs {
		if err := e.Validate(); err != nil {
			t.Fatalf("invalid event %+v: %v", e, err)
		}
		if !json.Valid(e.Data) {
			t.Fatal("data is not JSON")
		}
	}
}

// FuzzToken: arbitrary link tokens never verify unless signed with the key,
// and never panic.
func FuzzToken(f *testing.F) {
	o := &outreach{secret: []byte("0123456789abcdef0123456789abcdef")}
	good, _ := o.sign(context.Background(), linkToken{C: "c", U: "https://x.example/", R: "r"})
	f.Add(good)
	f.Add("eyJjIjoiYyJ9.AAAA")
	f.Add(".")
	f.Fuzz(func(t *testing.T, tok string) {
		lt, err := o.verify(context.Background(), tok)
		if err != nil {
			return
		}
		again, _ := o.sign(context.Background(), lt)
		p1, _, _ := strings.Cut(tok, ".")
		p2, _, _ := strings.Cut(again, ".")
		if lt.C == "" || (p1 == p2 && again != tok) {
			t.Fatalf("accepted a token that is not ours: %q", tok)
		}
	})
}

// FuzzCBOR: arbitrary CoAP payloads in CBOR either fail cleanly or become
// valid JSON that the normalizer can take.
func FuzzCBOR(f *testing.F) {
	f.Add([]byte{0xa2, 0x65, 'e', 'v', 'e', 'n', 't', 0x61, 'E', 0x6b, 'a', 'n', 'o', 'n', 'y', 'm', 'o', 'u', 's', 'I', 'd', 0x61, 'a'})
	f.Add([]byte{0xff})
	f.Add([]byte{0x9f, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		js, code, err := payloadJSON(60, b)
		if err != nil {
			if code == 0 || err.Error() == "" {
				t.Fatalf("error without a code or message: %v", err)
			}
			return
		}
		if !json.Valid(js) {
			t.Fatalf("CBOR became invalid JSON: %q", js)
		}
		n := &normalizer{receivedAt: time.Now(), maxBytes: 32 << 10}
		_, _ = n.normalize(js, "track", -1)
	})
}
