package event

import (
	"fmt"
	"strings"
	"testing"
)

func batchJSON(n int) []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"specversion":"1.0","id":"01a21d35-c6c5-7e8f-b9f8-%012d","source":"/bench","type":"bench.page","time":"2026-11-27T12:00:00Z","data":{"path":"/p/%d","ref":"https://example.com/"}}`, i, i)
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

func BenchmarkParseBatch100(b *testing.B) {
	body := batchJSON(100)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseBatch(body, DefaultMaxBytes, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeBatch100(b *testing.B) {
	evs, _ := ParseBatch(batchJSON(100), DefaultMaxBytes, now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeBatch(evs); err != nil {
			b.Fatal(err)
		}
	}
}
