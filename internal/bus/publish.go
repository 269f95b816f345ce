package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/event"
)

// Position is where an event is stored: the stream sequence of its message
// and its index inside that message.
type Position struct {
	Seq   uint64
	Index int
}

func (p Position) String() string {
	if p.Index == 0 {
		return strconv.FormatUint(p.Seq, 10)
	}
	return strconv.FormatUint(p.Seq, 10) + ":" + strconv.Itoa(p.Index)
}

// Ack is the outcome of publishing one event.
type Ack struct {
	ID        string
	Subject   string
	Position  Position
	Duplicate bool // stored earlier; Position is where
}

// Header names Ops sets on bus messages.
const (
	HeaderCount       = "Ops-Count"
	HeaderContentType = "Content-Type"
)

// Publish stores events, validated by the caller, and returns one Ack per
// event in order. It returns only after the bus acknowledged every message;
// on error nothing is acknowledged to the caller and a retry is safe.
// While the disk is short of space (Space), new events are refused with a
// *DiskFullError.
func (b *Bus) Publish(ctx context.Context, evs []event.Event) ([]Ack, error) {
	if err := b.Space(); err != nil && len(evs) > 0 {
		return nil, b.failed(err)
	}
	return b.publish(ctx, evs)
}

// PublishDerived is Publish for events that follow from events already
// accepted (a view's change events, dead letters): they are stored even
// while the disk is short of space, from the reserve kept for them, so
// what was acknowledged is processed.
func (b *Bus) PublishDerived(ctx context.Context, evs []event.Event) ([]Ack, error) {
	return b.publish(ctx, evs)
}

func (b *Bus) publish(ctx context.Context, evs []event.Event) ([]Ack, error) {
	start := time.Now()
	b.written.Store(start.UnixNano())
	acks := make([]Ack, len(evs))
	if len(evs) == 0 {
		return acks, nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout.D())
	defer cancel()

	hs := make([]uint64, len(evs))
	for i := range evs {
		hs[i] = b.dedup.hash(evs[i].ID)
		acks[i].ID, acks[i].Subject = evs[i].ID, evs[i].BusSubject()
	}
	known := make([]Position, len(evs))
	isKnown := make([]bool, len(evs))
	f := &flight{done: make(chan struct{})}
	var mine []uint64
	if b.dedup.enabled() {
		for {
			var waits []*flight
			mine, waits = b.dedup.reserve(hs, f, known, isKnown)
			if len(waits) == 0 {
				break
			}
			// Another publish holds some of these ids: let go of ours so two
			// publishes never wait on each other, then look again.
			b.dedup.finish(mine, f, nil, 0)
			f = &flight{done: make(chan struct{})}
			clear(isKnown)
			if err := waitAll(ctx, waits); err != nil {
				return nil, b.failed(fmt.Errorf("%w: waiting for a concurrent publish of the same ids: %v", ErrUnavailable, err))
			}
		}
	}
	msgs, futs, firstOf, err := b.submit(evs, hs, isKnown, acks)
	// Every message handed to the bus is waited for, whatever the caller
	// does meanwhile (a client hanging up cancels ctx): the bus may store
	// it, and its ids must then enter the window, or a retry that batches
	// the same events differently (another Nats-Msg-Id) stores them again.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.PublishTimeout.D())
	pending, werr := b.await(wctx, msgs, futs, acks)
	wcancel()
	if err == nil {
		err = werr
	}
	record := func() map[uint64]Position {
		stored := map[uint64]Position{}
		for mi, m := range msgs {
			if slices.Contains(pending, mi) || futs[mi] == nil {
				continue
			}
			for _, ei := range m.idx {
				if acks[ei].Position.Seq != 0 {
					stored[hs[ei]] = acks[ei].Position
				}
			}
		}
		return stored
	}
	if len(pending) > 0 {
		// The outcome of some messages is not known yet: the reservation
		// stays until it is, so a retry of these ids waits for it instead
		// of storing them a second time.
		go func() {
			lctx, lcancel := context.WithTimeout(context.Background(), lateAckWait)
			defer lcancel()
			still, _ := b.await(lctx, msgs, futs, acks, pending...)
			pending = still
			if b.dedup.enabled() {
				b.dedup.finish(mine, f, record(), time.Now().UnixNano())
			}
		}()
		return nil, b.failed(err)
	}
	if b.dedup.enabled() {
		b.dedup.finish(mine, f, record(), time.Now().UnixNano())
	}
	if err != nil {
		return nil, b.failed(err)
	}
	for i := range acks {
		if isKnown[i] {
			acks[i].Position, acks[i].Duplicate = known[i], true
		} else if acks[i].Duplicate {
			// Repeats inside this publish share the first occurrence's
			// position.
			if j := firstOf[hs[i]]; j != i {
				acks[i].Position = acks[j].Position
			}
		}
	}
	b.metrics.messages.Add(float64(len(msgs)))
	b.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	dups := 0
	for _, a := range acks {
		if a.Duplicate {
			dups++
		}
	}
	b.metrics.events.Add(float64(len(evs) - dups))
	b.metrics.duplicates.Add(float64(dups))
	return acks, nil
}

// lateAckWait bounds how long a publish whose acknowledgement did not come
// in time keeps its ids reserved, waiting for the outcome.
const lateAckWait = 2 * time.Minute

func (b *Bus) failed(err error) error {
	b.metrics.errors.Inc()
	return err
}

type outMsg struct {
	idx []int // indexes into evs, in message order
	msg *nats.Msg
}

// submit groups the events not yet known by subject, packs each group
// into messages under the payload limit and hands them all to the bus
// before anything waits, so one request costs one round of fsyncs. It
// returns the messages with the futures of those handed over (nil for
// the rest, after an error), and where each event first occurs.
func (b *Bus) submit(evs []event.Event, hs []uint64, isKnown []bool, acks []Ack) ([]outMsg, []jetstream.PubAckFuture, map[uint64]int, error) {
	bySubject := map[string][]int{}
	var order []string
	firstOf := map[uint64]int{} // repeats inside this publish point at the first
	for i := range evs {
		if isKnown[i] {
			continue
		}
		if j, ok := firstOf[hs[i]]; ok && evs[j].ID == evs[i].ID {
			acks[i].Duplicate = true
			continue
		}
		firstOf[hs[i]] = i
		s := acks[i].Subject
		if _, ok := bySubject[s]; !ok {
			order = append(order, s)
		}
		bySubject[s] = append(bySubject[s], i)
	}
	var msgs []outMsg
	for _, s := range order {
		ms, err := b.pack(s, evs, bySubject[s])
		if err != nil {
			return nil, nil, firstOf, err
		}
		msgs = append(msgs, ms...)
	}
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		fut, err := b.js.PublishMsgAsync(m.msg)
		if err != nil {
			return msgs, futures, firstOf, fmt.Errorf("%w: publish: %v", ErrUnavailable, err)
		}
		futures[i] = fut
	}
	return msgs, futures, firstOf, nil
}

// await waits for the acknowledgements of the messages only (all handed
// over ones when none are named) and fills in the positions of their
// events. It returns the messages whose outcome is still unknown when ctx
// ends, and the first error.
func (b *Bus) await(ctx context.Context, msgs []outMsg, futs []jetstream.PubAckFuture, acks []Ack, only ...int) ([]int, error) {
	var pending []int
	var first error
	for i, fut := range futs {
		if fut == nil || len(only) > 0 && !slices.Contains(only, i) {
			continue
		}
		select {
		case pa := <-fut.Ok():
			for k, ei := range msgs[i].idx {
				acks[ei].Position = Position{Seq: pa.Sequence, Index: k}
				acks[ei].Duplicate = pa.Duplicate
			}
		case err := <-fut.Err():
			if first == nil {
				first = fmt.Errorf("%w: publish to %s: %v", ErrUnavailable, msgs[i].msg.Subject, err)
			}
		case <-ctx.Done():
			pending = append(pending, i)
			if first == nil {
				first = fmt.Errorf("%w: no acknowledgement within %s", ErrUnavailable, b.cfg.PublishTimeout)
			}
		}
	}
	return pending, first
}

// pack encodes the events idx (all with subject s) into as few messages as
// fit under the payload limit.
func (b *Bus) pack(s string, evs []event.Event, idx []int) ([]outMsg, error) {
	return b.packWith(s, evs, idx, func(_ int, cur []int) string {
		if len(cur) == 1 {
			return evs[cur[0]].ID
		}
		return batchID(evs, cur)
	})
}

// packWith is pack with the Nats-Msg-Id of the n-th message given by msgID.
func (b *Bus) packWith(s string, evs []event.Event, idx []int, msgID func(n int, cur []int) string) ([]outMsg, error) {
	var out []outMsg
	var body []byte
	var cur []int
	flush := func() {
		if len(cur) == 0 {
			return
		}
		m := nats.NewMsg(s)
		if len(cur) == 1 {
			m.Data = body[1:] // drop the '[' opened for a batch
			m.Header.Set(HeaderContentType, event.ContentType)
		} else {
			m.Data = append(body, ']')
			m.Header.Set(HeaderContentType, event.BatchContentType)
		}
		m.Header.Set(jetstream.MsgIDHeader, msgID(len(out), cur))
		m.Header.Set(HeaderCount, strconv.Itoa(len(cur)))
		out = append(out, outMsg{idx: cur, msg: m})
		body, cur = nil, nil
	}
	for _, i := range idx {
		mark := len(body)
		if len(cur) == 0 {
			body = append(make([]byte, 0, 256*len(idx)), '[')
			mark = 0
		} else {
			body = append(body, ',')
		}
		var err error
		body, err = evs[i].AppendJSON(body)
		if err != nil {
			return nil, fmt.Errorf("encode event %q: %w", evs[i].ID, err)
		}
		if len(cur) > 0 && len(body)+1 > b.maxMsg {
			// Over the limit: close the message before this event and start
			// the next one with it.
			ev := append([]byte{'['}, body[mark+1:]...)
			body = body[:mark]
			flush()
			body = ev
		}
		cur = append(cur, i)
	}
	flush()
	return out, nil
}

// batchID is the Nats-Msg-Id of a batch: a hash of its ordered event ids, so
// a retried request dedups at the bus even after the in-memory window is gone.
func batchID(evs []event.Event, idx []int) string {
	h := sha256.New()
	for _, i := range idx {
		h.Write([]byte(evs[i].ID))
		h.Write([]byte{0})
	}
	return "b-" + hex.EncodeToString(h.Sum(nil)[:20])
}

// IsUnavailable reports whether err means the bus could not be reached.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// Group is a set of events for one subject published under a caller-chosen
// message id, for nodes of the graph whose outputs must be deterministic: a
// processor re-running the same input publishes the same message id, which
// the bus drops as a duplicate.
type Group struct {
	Subject string
	MsgID   string
	Events  []event.Event
}

// PublishGroups publishes every group (split under the payload limit, the
// n-th part suffixed ":n") and waits for all acknowledgements. It bypasses
// the event-id window: ids are deterministic and the message id dedups.
func (b *Bus) PublishGroups(ctx context.Context, groups []Group) error {
	b.written.Store(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout.D())
	defer cancel()
	var futures []jetstream.PubAckFuture
	n := 0
	for _, g := range groups {
		idx := make([]int, len(g.Events))
		for i := range idx {
			idx[i] = i
		}
		msgs, err := b.packWith(g.Subject, g.Events, idx, func(part int, _ []int) string {
			if part == 0 {
				return g.MsgID
			}
			return g.MsgID + ":" + strconv.Itoa(part)
		})
		if err != nil {
			return err
		}
		for _, m := range msgs {
			fut, err := b.js.PublishMsgAsync(m.msg)
			if err != nil {
				return b.failed(fmt.Errorf("%w: publish: %v", ErrUnavailable, err))
			}
			futures = append(futures, fut)
		}
		n += len(g.Events)
	}
	for _, fut := range futures {
		select {
		case <-fut.Ok():
		case err := <-fut.Err():
			return b.failed(fmt.Errorf("%w: publish to %s: %v", ErrUnavailable, fut.Msg().Subject, err))
		case <-ctx.Done():
			return b.failed(fmt.Errorf("%w: no acknowledgement within %s", ErrUnavailable, b.cfg.PublishTimeout))
		}
	}
	b.metrics.events.Add(float64(n))
	b.metrics.messages.Add(float64(len(futures)))
	return nil
}
