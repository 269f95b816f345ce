package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/enrich"
)

// kvSessions keeps the session enricher's state in a KV bucket, so sessions
// in progress survive a restart and every node that runs the processor after
// a failover continues them. Reads go to memory first; writes collect in a
// dirty set that the processor flushes, pipelined, before it acks a batch:
// the stored state never runs behind what was acknowledged.
type kvSessions struct {
	kv  jetstream.KeyValue
	js  jetstream.JetStream
	mem enrich.SessionStore

	mu    sync.Mutex
	dirty map[string]enrich.SessionState
}

func sessionBucket(processor string) string { return "OPS_SESSIONS_" + processor }

func openSessions(ctx context.Context, b *bus.Bus, processor string, timeout time.Duration) (*kvSessions, error) {
	kv, err := b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: sessionBucket(processor),
		Description: "session state of processor " + processor, History: 1, TTL: max(2*timeout, time.Hour)})
	if err != nil {
		return nil, err
	}
	return &kvSessions{kv: kv, js: b.JetStream(), mem: enrich.NewMemoryStore(100_000), dirty: map[string]enrich.SessionState{}}, nil
}

// visitorKey makes any visitor id a valid KV key.
func visitorKey(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:16])
}

func (s *kvSessions) Get(visitor string) (enrich.SessionState, bool) {
	if st, ok := s.mem.Get(visitor); ok {
		return st, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := s.kv.Get(ctx, visitorKey(visitor))
	if err != nil {
		return enrich.SessionState{}, false
	}
	var st enrich.SessionState
	if json.Unmarshal(e.Value(), &st) != nil {
		return enrich.SessionState{}, false
	}
	s.mem.Put(visitor, st)
	return st, true
}

func (s *kvSessions) Put(visitor string, st enrich.SessionState) {
	s.mem.Put(visitor, st)
	s.mu.Lock()
	s.dirty[visitor] = st
	s.mu.Unlock()
}

// flush writes the sessions changed since the last flush.
func (s *kvSessions) flush(ctx context.Context) error {
	s.mu.Lock()
	dirty := s.dirty
	s.dirty = map[string]enrich.SessionState{}
	s.mu.Unlock()
	var futs []jetstream.PubAckFuture
	for v, st := range dirty {
		b, _ := json.Marshal(st)
		f, err := s.js.PublishAsync("$KV."+s.kv.Bucket()+"."+visitorKey(v), b)
		if err != nil {
			return fmt.Errorf("session state: %w", err)
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("session state: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

var _ enrich.SessionStore = (*kvSessions)(nil)
