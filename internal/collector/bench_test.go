package collector

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func BenchmarkNormalizeBatch100(b *testing.B) {
	msgs := make([]json.RawMessage, 100)
	for i := range msgs {
		msgs[i] = json.RawMessage(fmt.Sprintf(`{"type":"track","event":"Page Viewed","anonymousId":"a-%d","messageId":"m-%d","properties":{"path":"/p/%d","title":"Pricing","referrer":"https://news.example/"},"context":{"userAgent":"Mozilla/5.0","page":{"url":"https://shop.example/p"}},"originalTimestamp":"2026-11-27T12:00:00Z"}`, i, i, i))
	}
	n := &normalizer{receivedAt: time.Now(), sentAt: time.Now(), maxBytes: 32 << 10, context: map[string]any{"library": map[string]any{"name": "x"}}}
	b.ReportAllocs()
	for b.Loop() {
		for i, m := range msgs {
			if _, err := n.normalize(m, "", i); err != nil {
				b.Fatal(err)
			}
		}
	}
}
