package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/event"
)

// Stored is an event read back from the bus.
type Stored struct {
	Position Position
	Subject  string
	Stored   time.Time // when the bus stored its message
	Event    event.Event
}

// ReadOptions select events: a subject filter and a start, by position
// (Start) or by store time (Since). Zero Start and Since mean the beginning
// for Read and "only new events" for Tail.
type ReadOptions struct {
	Stream string // EVENTS when empty
	Filter string
	Start  Position
	Since  time.Time
	Limit  int
}

// ParsePosition reads "seq" or "seq:index".
func ParsePosition(s string) (Position, error) {
	seqS, idxS, hasIdx := strings.Cut(s, ":")
	seq, err := strconv.ParseUint(seqS, 10, 64)
	if err != nil || seq == 0 {
		return Position{}, fmt.Errorf("want a stream sequence (1, 2, ...) or sequence:index, got %q", s)
	}
	p := Position{Seq: seq}
	if hasIdx {
		i, err := strconv.Atoi(idxS)
		if err != nil || i < 0 {
			return Position{}, fmt.Errorf("bad index in %q", s)
		}
		p.Index = i
	}
	return p, nil
}

func (o ReadOptions) consumerConfig() jetstream.ConsumerConfig {
	c := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     o.Filter,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
	}
	c.DeliverPolicy, c.OptStartSeq, c.OptStartTime = o.deliver(jetstream.DeliverAllPolicy)
	return c
}

// deliver maps the start of o to a consumer's deliver policy; def applies
// when o names no start.
func (o ReadOptions) deliver(def jetstream.DeliverPolicy) (jetstream.DeliverPolicy, uint64, *time.Time) {
	switch {
	case o.Start.Seq > 0:
		return jetstream.DeliverByStartSequencePolicy, o.Start.Seq, nil
	case !o.Since.IsZero():
		t := o.Since
		return jetstream.DeliverByStartTimePolicy, 0, &t
	}
	return def, 0, nil
}

func decodeMsg(m jetstream.Msg) ([]Stored, uint64, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, 0, err
	}
	evs, err := event.Decode(m.Data())
	if err != nil {
		return nil, 0, fmt.Errorf("decode message %d: %w", md.Sequence.Stream, err)
	}
	out := make([]Stored, len(evs))
	for i := range evs {
		out[i] = Stored{Position: Position{md.Sequence.Stream, i}, Subject: m.Subject(), Stored: md.Timestamp, Event: evs[i]}
	}
	return out, md.NumPending, nil
}

// Read returns up to o.Limit events from EVENTS and the position to continue
// from. It reads what is stored now and does not wait for more.
func (b *Bus) Read(ctx context.Context, o ReadOptions) ([]Stored, Position, error) {
	next := o.Start
	if o.Limit <= 0 {
		return nil, next, errors.New("limit must be positive")
	}
	name := o.Stream
	if name == "" {
		name = EventsStream
	}
	st, err := b.js.Stream(ctx, name)
	if err != nil {
		return nil, next, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	last := st.CachedInfo().State.LastSeq
	if next.Seq == 0 {
		next.Seq = 1
	}
	if o.Start.Seq > last || last == 0 {
		return nil, next, nil
	}
	if !o.Since.IsZero() && o.Since.After(st.CachedInfo().State.LastTime) {
		return nil, Position{Seq: last + 1}, nil
	}
	cons, err := st.CreateConsumer(ctx, o.consumerConfig())
	if err != nil {
		return nil, next, fmt.Errorf("%w: read consumer: %v", ErrUnavailable, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	var out []Stored
	limited := false // stopped at the limit, with more to read
	pf := &pendingFetcher{cons: cons}
	for len(out) < o.Limit {
		batch, err := pf.fetch(min(o.Limit-len(out), 256))
		if err != nil {
			return nil, next, fmt.Errorf("%w: fetch: %v", ErrUnavailable, err)
		}
		n, done := 0, false
		for m := range batch.Messages() {
			n++
			pf.saw(m)
			if done {
				continue
			}
			evs, pending, err := decodeMsg(m)
			if err != nil {
				return nil, next, err
			}
			for _, s := range evs {
				if s.Position.Seq == o.Start.Seq && s.Position.Index < o.Start.Index {
					continue
				}
				if len(out) == o.Limit {
					next, done, limited = s.Position, true, true
					break
				}
				out = append(out, s)
				next = Position{Seq: s.Position.Seq + 1}
			}
			if pending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, next, fmt.Errorf("%w: fetch: %v", ErrUnavailable, err)
		}
		if n == 0 || done {
			break
		}
	}
	// Everything stored when the read began has been looked at: go on
	// after it, not from the start (a start time in the future, or a filter
	// nothing matched, would otherwise send a poller back to the
	// beginning).
	if !limited && next.Seq <= last {
		next = Position{Seq: last + 1}
	}
	return out, next, nil
}

// What one tail may hold pulled from the bus and not yet handed to fn.
const (
	TailBatch = 32
	TailBytes = 1 << 20
)

// Tail calls fn for each event matching o as it is stored, until ctx ends
// or fn returns an error. With no start it begins with new events. fn may
// block: the tail then waits, and falls behind, without buffering more
// than TailBatch messages and TailBytes.
func (b *Bus) Tail(ctx context.Context, o ReadOptions, fn func(Stored) error) error {
	// A tail's consumer dies with it: deleted on return, and removed by the
	// server 15 s after a crash left it idle.
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{o.Filter}, InactiveThreshold: 15 * time.Second}
	cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = o.deliver(jetstream.DeliverNewPolicy)
	cons, err := b.js.OrderedConsumer(ctx, EventsStream, cfg)
	if err != nil {
		return fmt.Errorf("%w: tail consumer: %v", ErrUnavailable, err)
	}
	// Pulled in small bounded batches: a tail whose reader is slow holds at
	// most this much, and the server sends more only when it asks, so a
	// reader that never reads costs neither memory nor the connection that
	// publishing and the modules share.
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(TailBatch, TailBytes))
	if err != nil {
		return fmt.Errorf("%w: tail: %v", ErrUnavailable, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer func() {
		it.Stop()
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if info := cons.CachedInfo(); info != nil {
			_ = b.js.DeleteConsumer(dctx, EventsStream, info.Name)
		}
	}()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("%w: tail: %v", ErrUnavailable, err)
		}
		evs, _, err := decodeMsg(m)
		if err != nil {
			return err
		}
		for _, s := range evs {
			if s.Position.Seq == o.Start.Seq && s.Position.Index < o.Start.Index {
				continue
			}
			if err := fn(s); err != nil {
				return err
			}
		}
	}
}

// StreamInfo describes one stream for the API.
type StreamInfo struct {
	Name      string    `json:"name"`
	Subjects  []string  `json:"subjects"`
	Messages  uint64    `json:"messages"`
	Bytes     uint64    `json:"bytes"`
	FirstSeq  uint64    `json:"first_seq"`
	LastSeq   uint64    `json:"last_seq"`
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	Consumers int       `json:"consumers"`
	MaxAge    string    `json:"max_age"`
	MaxBytes  int64     `json:"max_bytes"`
	Replicas  int       `json:"replicas"`
	Storage   string    `json:"storage"`
}

// Streams lists every stream on the bus (Ops's and KV/object buckets).
func (b *Bus) Streams(ctx context.Context) ([]StreamInfo, error) {
	var out []StreamInfo
	l := b.js.ListStreams(ctx)
	for si := range l.Info() {
		out = append(out, StreamInfo{
			Name: si.Config.Name, Subjects: si.Config.Subjects,
			Messages: si.State.Msgs, Bytes: si.State.Bytes,
			FirstSeq: si.State.FirstSeq, LastSeq: si.State.LastSeq,
			FirstTime: si.State.FirstTime, LastTime: si.State.LastTime,
			Consumers: si.State.Consumers, MaxAge: si.Config.MaxAge.String(),
			MaxBytes: si.Config.MaxBytes, Replicas: si.Config.Replicas, Storage: si.Config.Storage.String(),
		})
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("%w: list streams: %v", ErrUnavailable, err)
	}
	return out, nil
}

// rebuildDedup refills the dedup window from the events stored within it,
// so a retry that arrives after a restart is still recognised.
func (b *Bus) rebuildDedup(ctx context.Context) (int, error) {
	if !b.dedup.enabled() {
		return 0, nil
	}
	st, err := b.js.Stream(ctx, EventsStream)
	if err != nil {
		return 0, err
	}
	state := st.CachedInfo().State
	since := time.Now().Add(-b.dedup.window)
	if state.Msgs == 0 || state.LastTime.Before(since) {
		return 0, nil
	}
	o := ReadOptions{Filter: EventsFilter, Since: since}
	cons, err := st.CreateConsumer(ctx, o.consumerConfig())
	if err != nil {
		return 0, err
	}
	defer func() { _ = st.DeleteConsumer(context.Background(), cons.CachedInfo().Name) }()
	n := 0
	d := b.dedup
	pf := &pendingFetcher{cons: cons}
	for {
		batch, err := pf.fetch(512)
		if err != nil {
			return n, err
		}
		got, pending := 0, uint64(1)
		for m := range batch.Messages() {
			got++
			pf.saw(m)
			md, err := m.Metadata()
			if err != nil {
				return n, err
			}
			pending = md.NumPending
			ids, err := decodeIDs(m.Data())
			if err != nil {
				return n, fmt.Errorf("message %d: %w", md.Sequence.Stream, err)
			}
			at := md.Timestamp.UnixNano()
			d.mu.Lock()
			for i, id := range ids {
				d.addLocked(d.hash(id), Position{md.Sequence.Stream, i}, at)
			}
			d.expireLocked(time.Now().UnixNano())
			d.mu.Unlock()
			n += len(ids)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return n, err
		}
		if got == 0 || pending == 0 {
			return n, nil
		}
	}
}

// decodeIDs reads only the ids of a stored message, which is much cheaper
// than decoding whole events.
func decodeIDs(body []byte) ([]string, error) {
	type idOnly struct {
		ID string `json:"id"`
	}
	t := bytes.TrimSpace(body)
	if len(t) > 0 && t[0] == '[' {
		var v []idOnly
		if err := json.Unmarshal(t, &v); err != nil {
			return nil, err
		}
		ids := make([]string, len(v))
		for i := range v {
			ids[i] = v[i].ID
		}
		return ids, nil
	}
	var v idOnly
	if err := json.Unmarshal(t, &v); err != nil {
		return nil, err
	}
	return []string{v.ID}, nil
}

// fetchBytes bounds what one fetch asks the server for. The embedded
// server queues what it sends a client, up to its max_pending, on the one
// in-process connection every module shares; a fetch of 512 messages of
// 350 KB each (a busy collector's batches) asked for 180 MB, the server
// called the connection a slow consumer and dropped it, and every publish
// failed until it came back. A fetch now asks for at most this many bytes
// (and at least one whole message of the largest size: raiseFetchBytes).
var fetchBytes atomic.Int64

func init() { fetchBytes.Store(16 << 20) }

// raiseFetchBytes makes room in one fetch for a message of maxMsg bytes
// (bus.max_payload): a fetch whose bound is below the next message would
// never get it.
func raiseFetchBytes(maxMsg int) {
	for {
		cur := fetchBytes.Load()
		want := int64(maxMsg) + 1<<20
		if want <= cur || fetchBytes.CompareAndSwap(cur, want) {
			return
		}
	}
}

// fetchSoon asks for up to n messages and fetchBytes bytes: the server
// sends what it has at once and the request ends a few milliseconds later.
// An empty answer does not prove nothing is pending (the server may not
// have answered in time): only consumers that loop anyway use it.
func fetchSoon(cons jetstream.Consumer, n int) (jetstream.MessageBatch, error) {
	return cons.Fetch(n, jetstream.FetchMaxBytes(int(fetchBytes.Load())), jetstream.FetchMaxWait(5*time.Millisecond))
}

// pendingFetcher asks for what is pending now with no-wait requests, whose
// empty answer does prove nothing is (readers that stop there need that);
// a no-wait request cannot carry a byte bound, so it asks for as many
// messages as fetchBytes holds at the largest size seen so far (16 before
// it has seen any: at most 128 MiB of 8 MiB messages, within what the
// embedded server queues).
type pendingFetcher struct {
	cons    jetstream.Consumer
	largest int
}

func (f *pendingFetcher) fetch(n int) (jetstream.MessageBatch, error) {
	k := min(n, 16)
	if f.largest > 0 {
		k = max(1, min(n, int(fetchBytes.Load())/f.largest))
	}
	return f.cons.FetchNoWait(k)
}

func (f *pendingFetcher) saw(m jetstream.Msg) { f.largest = max(f.largest, len(m.Data())) }

// FetchBatch returns up to n messages from a pull consumer with low latency:
// what is pending now, at once; when nothing is, it waits up to idle for the
// next message and returns as soon as one arrives (a plain Fetch of n would
// hold a lone message until the batch fills or the wait ends).
func FetchBatch(cons jetstream.Consumer, n int, idle time.Duration) ([]jetstream.Msg, error) {
	collect := func(b jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
		if err != nil {
			return nil, err
		}
		var out []jetstream.Msg
		for m := range b.Messages() {
			out = append(out, m)
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) &&
			!errors.Is(err, jetstream.ErrMaxBytesExceeded) && len(out) == 0 {
			return nil, err
		}
		return out, nil
	}
	msgs, err := collect(fetchSoon(cons, n))
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	return collect(cons.Fetch(1, jetstream.FetchMaxBytes(int(fetchBytes.Load())), jetstream.FetchMaxWait(idle)))
}

// FetchNow returns up to n messages that are pending now, without waiting;
// none means none are.
func FetchNow(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	f := &pendingFetcher{cons: cons}
	var out []jetstream.Msg
	for len(out) < n {
		b, err := f.fetch(n - len(out))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range b.Messages() {
			f.saw(m)
			out = append(out, m)
			got++
		}
		if got == 0 {
			break
		}
	}
	return out, nil
}

// Recent returns up to n of the latest events on filter, oldest first: it
// reads back from the end of the stream in widening steps (at most about
// 64k messages), so a sample of a busy subject costs one short read and a
// rare one a few more.
func (b *Bus) Recent(ctx context.Context, filter string, n int) ([]Stored, error) {
	if n <= 0 {
		return nil, errors.New("n must be positive")
	}
	st, err := b.js.Stream(ctx, EventsStream)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	last := st.CachedInfo().State.LastSeq
	for back := uint64(256); ; back *= 4 {
		start := uint64(1)
		if last > back {
			start = last - back + 1
		}
		var got []Stored
		for from := (Position{Seq: start}); from.Seq <= last; {
			page, next, err := b.Read(ctx, ReadOptions{Filter: filter, Start: from, Limit: 4096})
			if err != nil {
				return nil, err
			}
			got = append(got, page...)
			if len(got) > n {
				got = append(got[:0], got[len(got)-n:]...)
			}
			if len(page) < 4096 {
				break
			}
			from = next
		}
		if len(got) >= n || start == 1 || back >= 1<<16 {
			return got, nil
		}
	}
}
