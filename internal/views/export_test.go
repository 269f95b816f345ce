package views

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/graph"
)

// countingWriter is an HTTP response that keeps nothing: it counts bytes
// and lines and samples the heap while the export runs.
type countingWriter struct {
	h             http.Header
	bytes, lines  int64
	peak, samples atomic.Uint64
}

func (w *countingWriter) Header() http.Header { return w.h }
func (w *countingWriter) WriteHeader(int)     {}
func (w *countingWriter) Write(p []byte) (int, error) {
	w.bytes += int64(len(p))
	for _, c := range p {
		if c == '\n' {
			w.lines++
		}
	}
	return len(p), nil
}
func (w *countingWriter) Flush() {
	if w.samples.Add(1)%20 == 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > w.peak.Load() {
			w.peak.Store(ms.HeapInuse)
		}
	}
}

// A CSV export of 200,000 rows (OPS_EXPORT_ROWS to change) streams: the heap while it runs stays far
// below what holding the rows (or the CSV) would take.
func TestCSVExportStreamsInBoundedMemory(t *testing.T) {
	rows := 200_000
	if n, err := strconv.Atoi(os.Getenv("OPS_EXPORT_ROWS")); err == nil && n > 0 {
		rows = n
	}
	ctx := context.Background()
	bc := config.Default().Bus
	bc.Sync = config.Sync{Interval: time.Second} // loading 200k rows with fsync each would take minutes
	b, err := bus.Open(ctx, bus.Options{Config: bc, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, _ := config.Parse([]byte("views:\n  - name: big\n    from: ev.big.>\n    key: {id: this.data.id, label: this.data.label}\n    measures: {n: count, total: sum(this.data.v)}\n"))
	g, err := graph.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{v: g.Views[0], bus: b, log: slog.New(slog.DiscardHandler), m: newMetrics(nil), cache: map[string]*row{}}
	if err := r.open(ctx); err != nil {
		t.Fatal(err)
	}
	// Write the rows straight into the bucket, as a fold would.
	js := b.JetStream()
	for i := 0; i < rows; i++ {
		key := []any{fmt.Sprintf("id-%07d", i), "comma, \"quote\"\nline ✓"}
		rw := row{Key: key, M: map[string]*mstate{"n": {N: 1}, "total": {N: float64(i)}}, Seq: uint64(i + 1)}
		data, _ := json.Marshal(rw)
		if _, err := js.PublishAsync("$KV."+r.kv.Bucket()+"."+rowKey(0, key), data, jetstream.WithStallWait(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	// A low GC target makes the heap track live memory, not garbage.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	w := &countingWriter{h: http.Header{}}
	req := httptest.NewRequest("GET", "/api/v1/views/big?format=csv", nil)
	t0 := time.Now()
	r.streamCSV(w, req, Query{CSV: true})
	// Every label holds a quoted newline: two line breaks a row.
	if w.lines != int64(2*rows+1) {
		t.Fatalf("exported %d lines, want %d", w.lines, 2*rows+1)
	}
	growth := int64(w.peak.Load()) - int64(base.HeapInuse)
	t.Logf("%d rows, %.1f MiB of CSV in %v; heap grew at most %.1f MiB", rows, float64(w.bytes)/(1<<20), time.Since(t0).Round(time.Millisecond), float64(growth)/(1<<20))
	// A push watcher that buffered as fast as the server sends grew the heap
	// by 141 MiB (16 times the export) on this export; streaming in pulls
	// of 256 rows grows it by about the export's size or less, most of it
	// the embedded NATS server (in this process) caching the blocks it
	// reads, and more under the race detector: twice the export is the
	// line.
	if growth > 2*w.bytes {
		t.Fatalf("heap grew %d bytes for a %d-byte export: not streaming", growth, w.bytes)
	}
}
