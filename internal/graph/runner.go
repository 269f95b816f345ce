package graph

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/event"
)

// Runner is the life cycle every node of the graph shares, processors and
// views alike: fetch a batch from the node's durable consumer, decode it,
// send messages that are not Ops events to the node's dead letters, hand
// the rest to Handle (which stores the effects and acks the batch),
// reopen the consumer from its ack floor after a failed batch, and report
// the last error and the lag.
type Runner struct {
	Name string
	Bus  *bus.Bus
	Log  *slog.Logger
	Size int // messages a batch
	// Silent publishes no dead letters (a view's rebuild shadow: they
	// went out the first time).
	Silent bool
	// Consumer is the consumer to fetch from now.
	Consumer func() jetstream.Consumer
	// Reopen runs after a failed batch: the node reopens its consumer from
	// the ack floor, so the batch comes back first and in order.
	Reopen func(ctx context.Context) error
	// Handle stores a batch's effects and acks it (Batch.Ack).
	Handle func(ctx context.Context, b *Batch) error

	mu      sync.Mutex
	lastErr string
}

// Batch is one fetched batch.
type Batch struct {
	Cons jetstream.Consumer
	Msgs []jetstream.Msg // every message, acked together by Ack
	// Items are the messages that decoded, in order.
	Items []Item
	// Undecodable counts the messages sent to dead letters whole.
	Undecodable int
	// Pending is how many messages were still waiting after this batch.
	Pending uint64
}

// Item is one decoded message.
type Item struct {
	Seq    uint64
	Events []event.Event
}

// Ack acknowledges the batch in order and waits for the server to record
// the last ack, so a restart does not deliver the batch again.
func (b *Batch) Ack(ctx context.Context) error {
	for _, m := range b.Msgs[:len(b.Msgs)-1] {
		_ = m.Ack()
	}
	if err := b.Msgs[len(b.Msgs)-1].DoubleAck(ctx); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// Run loops until ctx ends; the batch in hand is finished first.
func (r *Runner) Run(ctx context.Context) {
	bus.Batches{
		Size:     r.Size,
		Consumer: r.Consumer,
		Handle:   r.Batch,
		Fail:     r.Fail,
		Recover: func(ctx context.Context) {
			if err := r.Reopen(ctx); err != nil && ctx.Err() == nil {
				r.Fail(err)
			}
		},
	}.Run(ctx)
}

// Batch decodes one fetched batch, dead-letters what does not decode and
// hands the rest to Handle (Run calls it for each batch it fetches; a
// loop of the node's own, such as a view's rebuild, may too).
func (r *Runner) Batch(ctx context.Context, cons jetstream.Consumer, msgs []jetstream.Msg) error {
	b := &Batch{Cons: cons, Msgs: msgs}
	var dead []bus.Group
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		b.Pending = md.NumPending
		evs, err := event.Decode(m.Data())
		if err != nil {
			// Not an Ops event: dead-letter it whole rather than block the
			// node, or lose it without a trace.
			b.Undecodable++
			r.Log.Warn("message does not decode; sent to dead letters", "seq", md.Sequence.Stream, "err", err)
			dead = append(dead, bus.Group{Subject: "ev.deadletter." + r.Name, MsgID: fmt.Sprintf("d:%s:%d", r.Name, md.Sequence.Stream),
				Events: []event.Event{DeadLetter(r.Name, "decode", err, event.Event{ID: strconv.FormatUint(md.Sequence.Stream, 10)})}})
			continue
		}
		b.Items = append(b.Items, Item{Seq: md.Sequence.Stream, Events: evs})
	}
	if len(dead) > 0 && !r.Silent {
		if err := r.Bus.PublishGroups(ctx, dead); err != nil {
			return err
		}
	}
	return r.Handle(ctx, b)
}

// Fail records an error as the node's last.
func (r *Runner) Fail(err error) {
	r.Log.Warn("node error", "err", err)
	r.mu.Lock()
	r.lastErr = time.Now().UTC().Format(time.RFC3339) + " " + err.Error()
	r.mu.Unlock()
}

// LastError is the last error recorded, with its time; "" when none.
func (r *Runner) LastError() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Lag is how many messages wait for the node: not yet delivered, and
// delivered but not yet acknowledged (a batch in hand counts until it is
// done, so a node busy with its backlog after a restart does not report
// 0). It asks the server; 0 when it cannot.
func (r *Runner) Lag(ctx context.Context) uint64 {
	cons := r.Consumer()
	if cons == nil {
		return 0
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0
	}
	return info.NumPending + uint64(info.NumAckPending)
}

// DerivedID is the id of a node's output for an input event: the same input
// always gives the same id.
func DerivedID(node, inputID string) string {
	h := sha256.Sum256([]byte(node + "\x00" + inputID))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// DeadLetter wraps an event a node could not handle, with the stage and the
// error, for ev.deadletter.<node>. Its id is derived from the node and the
// input, so a retried failure is stored once.
func DeadLetter(node, stage string, err error, orig event.Event) event.Event {
	data, _ := json.Marshal(map[string]any{"node": node, "stage": stage, "error": err.Error(), "event": orig})
	return event.Event{
		SpecVersion: event.SpecVersion, ID: DerivedID("deadletter/"+node, orig.ID), Source: "/ops/" + node,
		Type: "deadletter." + node, Time: time.Now().UTC(), DataContentType: "application/json", Data: data,
	}
}

// ChangeData is the data of an ev.view.<name>.* event.
type ChangeData struct {
	View   string         `json:"view"`
	Key    map[string]any `json:"key"`
	Window *time.Time     `json:"window,omitempty"`
	// WindowSeconds is the window's length (windowed views only).
	WindowSeconds int64          `json:"window_seconds,omitempty"`
	Old           map[string]any `json:"old"`
	New           map[string]any `json:"new"`
}

// Render formats a view value as text (CSV cells, series labels): strings
// as they are, numbers without exponent, others as JSON.
func Render(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
