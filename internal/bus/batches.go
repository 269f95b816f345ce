package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Batches is the loop of a graph node: fetch a batch from its consumer,
// hand it over, repeat until ctx ends.
type Batches struct {
	Size int
	// Consumer returns the consumer to fetch from now (a view's changes when
	// a rebuild switches generations).
	Consumer func() jetstream.Consumer
	// Handle stores the batch's effects and acks it. It runs to the end even
	// when ctx is cancelled meanwhile, so shutdown finishes the batch in hand.
	Handle func(ctx context.Context, cons jetstream.Consumer, msgs []jetstream.Msg) error
	// Fail records an error; Recover runs after a failed batch (the node
	// reopens its consumer from the ack floor so the batch comes back first).
	Fail    func(error)
	Recover func(ctx context.Context)
}

// Run loops until ctx ends, backing off (100 ms doubling to 5 s) after errors.
func (b Batches) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	for ctx.Err() == nil {
		cons := b.Consumer()
		msgs, err := FetchBatch(cons, b.Size, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.Fail(err)
			pause()
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err = b.Handle(wctx, cons, msgs)
		cancel()
		if err != nil {
			b.Fail(err)
			pause()
			if b.Recover != nil && ctx.Err() == nil {
				b.Recover(ctx)
			}
			continue
		}
		backoff = 100 * time.Millisecond
	}
}
