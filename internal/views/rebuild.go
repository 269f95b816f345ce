package views

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
)

// RebuildStatus is the progress of a view rebuild, as the API reports it.
type RebuildStatus struct {
	View          string `json:"view"`
	State         string `json:"state"` // running, done, failed
	Generation    int    `json:"generation"`
	MessagesDone  uint64 `json:"messages_done"`
	MessagesTotal uint64 `json:"messages_total"`
	Events        uint64 `json:"events"`
	// EventsTotal is estimated: a bus message holds a batch of events, so
	// the total is known in messages; events per message so far scale it.
	EventsTotal uint64     `json:"events_total_estimate"`
	Progress    float64    `json:"progress"` // 0 to 1, by bus messages
	Rate        float64    `json:"events_per_second"`
	ETASeconds  float64    `json:"eta_seconds"`
	Started     time.Time  `json:"started"`
	Finished    *time.Time `json:"finished,omitempty"`
	Error       string     `json:"error,omitempty"`
}

// ErrRebuilding is returned when a rebuild of the view is already running.
var ErrRebuilding = errors.New("a rebuild of this view is running")

// Rebuild folds the view from the first stored event into a new generation
// while the current one keeps serving queries (and folding new events); when
// the new generation has caught up it takes over and the old one is deleted.
// A rebuild publishes no change events: they went out when the events were
// first folded.
func (r *runner) Rebuild(ctx context.Context) (*RebuildStatus, error) {
	r.mu.Lock()
	if r.rb != nil && r.rb.State == "running" {
		st := *r.rb
		r.mu.Unlock()
		return &st, ErrRebuilding
	}
	gen := r.gen + 1
	st := &RebuildStatus{View: r.v.Spec.Name, State: "running", Generation: gen, Started: time.Now().UTC()}
	r.rb = st
	r.mu.Unlock()

	shadow := newRunner(r.v, r.bus, r.log.With("rebuild", gen), r.m, gen, true)
	// Start from nothing: a leftover generation from a failed attempt goes.
	name := r.v.Spec.Name
	_ = r.bus.JetStream().DeleteKeyValue(ctx, genBucket(name, gen))
	_ = r.bus.JetStream().DeleteConsumer(ctx, bus.EventsStream, genConsumer(name, gen))
	if err := shadow.open(ctx); err != nil {
		return r.rebuildFailed(err), err
	}
	info, err := shadow.cons.Info(ctx)
	if err != nil {
		return r.rebuildFailed(err), err
	}
	r.mu.Lock()
	st.MessagesTotal = info.NumPending
	out := *st
	r.mu.Unlock()
	go r.runRebuild(context.WithoutCancel(ctx), shadow)
	return &out, nil
}

func (r *runner) rebuildFailed(err error) *RebuildStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now().UTC()
	r.rb.State, r.rb.Error, r.rb.Finished = "failed", err.Error(), &now
	st := *r.rb
	return &st
}

func (r *runner) runRebuild(ctx context.Context, shadow *runner) {
	t0 := time.Now()
	for {
		msgs, err := bus.FetchBatch(shadow.cons, BatchSize, 200*time.Millisecond)
		if err != nil {
			r.rebuildFailed(err)
			return
		}
		var pending uint64
		if len(msgs) > 0 {
			if err := shadow.run.Batch(ctx, shadow.cons, msgs); err != nil {
				r.rebuildFailed(err)
				return
			}
			md, _ := msgs[len(msgs)-1].Metadata()
			pending = md.NumPending
		}
		shadow.mu.Lock()
		events := shadow.in
		shadow.mu.Unlock()
		r.mu.Lock()
		st := r.rb
		if st.MessagesTotal < st.MessagesDone+pending {
			st.MessagesTotal = st.MessagesDone + pending // new events arrive meanwhile
		}
		st.MessagesDone += uint64(len(msgs))
		st.Events = events
		if el := time.Since(t0).Seconds(); el > 0 {
			st.Rate = float64(events) / el
			if st.MessagesDone > 0 {
				st.ETASeconds = el / float64(st.MessagesDone) * float64(pending)
			}
		}
		if st.MessagesTotal > 0 {
			st.Progress = min(1, float64(st.MessagesDone)/float64(st.MessagesTotal))
		}
		if st.MessagesDone > 0 {
			st.EventsTotal = uint64(float64(events) / float64(st.MessagesDone) * float64(st.MessagesTotal))
		}
		r.mu.Unlock()
		if len(msgs) == 0 || pending == 0 {
			if r.trySwitch(ctx, shadow) {
				return
			}
		}
	}
}

// trySwitch makes the shadow the view's generation if nothing is left for it
// to fold; it holds the fold lock so no batch lands in between.
func (r *runner) trySwitch(ctx context.Context, shadow *runner) bool {
	r.foldMu.Lock()
	defer r.foldMu.Unlock()
	// Fold whatever arrived since the last look, with the main fold paused.
	for {
		msgs, err := bus.FetchNow(shadow.cons, BatchSize)
		if err != nil || len(msgs) == 0 {
			break
		}
		if err := shadow.run.Batch(ctx, shadow.cons, msgs); err != nil {
			r.rebuildFailed(err)
			return true
		}
	}
	name := r.v.Spec.Name
	act, err := r.bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: activeBucket, History: 1})
	if err == nil {
		_, err = act.Put(ctx, name, []byte(strconv.Itoa(shadow.gen)))
	}
	if err != nil {
		r.rebuildFailed(fmt.Errorf("switch: %w", err))
		return true
	}
	oldGen := r.gen
	r.mu.Lock()
	r.kv = shadow.kv
	r.mu.Unlock()
	r.cons, r.gen, r.cache, r.watermark = shadow.cons, shadow.gen, shadow.cache, shadow.watermark
	_ = r.bus.JetStream().DeleteConsumer(ctx, bus.EventsStream, genConsumer(name, oldGen))
	_ = r.bus.JetStream().DeleteKeyValue(ctx, genBucket(name, oldGen))
	r.mu.Lock()
	now := time.Now().UTC()
	r.rb.State, r.rb.Finished, r.rb.Progress, r.rb.ETASeconds = "done", &now, 1, 0
	r.rb.Events, r.rb.EventsTotal = shadow.in, shadow.in
	r.mu.Unlock()
	r.log.Info("rebuild done", "generation", shadow.gen, "events", shadow.in)
	return true
}

func (m *Module) rebuild(w http.ResponseWriter, req *http.Request) {
	rn := m.view(req.PathValue("name"))
	if rn == nil {
		writeJSON(w, http.StatusNotFound, errBody{Error: fmt.Sprintf("no view %q", req.PathValue("name")), Field: "name"})
		return
	}
	st, err := rn.Rebuild(req.Context())
	switch {
	case errors.Is(err, ErrRebuilding):
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "rebuild": st})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, errBody{Error: err.Error()})
	default:
		writeJSON(w, http.StatusAccepted, st)
	}
}

func (m *Module) rebuildStatus(w http.ResponseWriter, req *http.Request) {
	rn := m.view(req.PathValue("name"))
	if rn == nil {
		writeJSON(w, http.StatusNotFound, errBody{Error: fmt.Sprintf("no view %q", req.PathValue("name")), Field: "name"})
		return
	}
	rn.mu.Lock()
	var st *RebuildStatus
	if rn.rb != nil {
		c := *rn.rb
		st = &c
	}
	rn.mu.Unlock()
	if st == nil {
		writeJSON(w, http.StatusNotFound, errBody{Error: "no rebuild has run since start", Field: "name"})
		return
	}
	writeJSON(w, http.StatusOK, st)
}
