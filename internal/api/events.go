package api

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/event"
)

// PublishResult is the body of a successful POST /api/v1/events.
type PublishResult struct {
	Count      int        `json:"count"`
	Stored     int        `json:"stored"`
	Duplicates int        `json:"duplicates"`
	Events     []EventAck `json:"events"`
}

// EventAck says where one event is stored.
type EventAck struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Seq       uint64 `json:"seq"`
	Index     int    `json:"index"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// maxReadLimit bounds one GET /api/v1/events page.
const maxReadLimit = 10000

func (m *Module) postEvents(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type",
			fmt.Sprintf("want %s, %s or application/json, got %q", event.ContentType, event.BatchContentType, ct))
		return
	}
	switch mt {
	case event.ContentType, event.BatchContentType, "application/json":
	default:
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type",
			fmt.Sprintf("want %s, %s or application/json, got %q", event.ContentType, event.BatchContentType, mt))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(m.cfg.MaxBodyBytes)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("request body over the limit of %d bytes (http.max_body_bytes)", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "body", "read body: "+err.Error())
		return
	}
	now := time.Now()
	max := m.deps.MaxEventSz
	var evs []event.Event
	trimmed := strings.TrimSpace(string(body[:min(len(body), 64)]))
	isArray := strings.HasPrefix(trimmed, "[")
	switch {
	case mt == event.ContentType && isArray:
		writeError(w, http.StatusBadRequest, "body", "a JSON array is a batch: send it as "+event.BatchContentType)
		return
	case mt == event.BatchContentType:
		evs, err = event.ParseBatch(body, max, now)
	default:
		evs, err = event.ParseAny(body, max, now)
	}
	if err != nil {
		writeEventError(w, err)
		return
	}
	// Events on reserved domains steer Ops or are Ops's own record: only
	// a caller holding the domain's permission may publish them.
	for i, e := range evs {
		if perm, ok := event.Reserved(e.Type); ok && !m.deps.Auth.Allowed(r, perm) {
			field := "type"
			if len(evs) > 1 || isArray {
				field = fmt.Sprintf("[%d].type", i)
			}
			writeError(w, http.StatusForbidden, field, fmt.Sprintf("type %q is on a reserved domain: publishing it needs %s (docs/security.md, reserved event domains); nothing was stored", e.Type, perm))
			return
		}
	}
	acks, err := m.deps.Bus.Publish(r.Context(), evs)
	if err != nil {
		m.log.Warn("publish failed", "events", len(evs), "err", err)
		m.deps.Bus.WriteError(w, err)
		return
	}
	res := PublishResult{Count: len(acks), Events: make([]EventAck, len(acks))}
	for i, a := range acks {
		res.Events[i] = EventAck{ID: a.ID, Subject: a.Subject, Seq: a.Position.Seq, Index: a.Position.Index, Duplicate: a.Duplicate}
		if a.Duplicate {
			res.Duplicates++
		}
	}
	res.Stored = res.Count - res.Duplicates
	writeJSON(w, http.StatusOK, res)
}

func writeEventError(w http.ResponseWriter, err error) {
	var fe *event.Error
	var se *event.SizeError
	switch {
	case errors.As(err, &se):
		writeError(w, http.StatusRequestEntityTooLarge, se.Field, se.Error())
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, fe.Field, fe.Error())
	default:
		writeError(w, http.StatusBadRequest, "", err.Error())
	}
}

// StoredEvent is one event in GET /api/v1/events.
type StoredEvent struct {
	Seq     uint64      `json:"seq"`
	Index   int         `json:"index"`
	Subject string      `json:"subject"`
	Stored  time.Time   `json:"stored"`
	Event   event.Event `json:"event"`
}

// readOptions parses subject, since and limit; it writes the error itself.
func readOptions(w http.ResponseWriter, r *http.Request, defLimit int) (bus.ReadOptions, bool) {
	q := r.URL.Query()
	o := bus.ReadOptions{Filter: q.Get("subject"), Limit: defLimit}
	if o.Filter == "" {
		o.Filter = bus.EventsFilter
	}
	if err := event.ValidateFilter(o.Filter); err != nil {
		writeError(w, http.StatusBadRequest, "subject", err.Error())
		return o, false
	}
	if tok, _, _ := strings.Cut(o.Filter, "."); tok != event.SubjectPrefix {
		writeError(w, http.StatusBadRequest, "subject", "event subjects start with \"ev.\" (example: ev.track.>)")
		return o, false
	}
	if s := q.Get("since"); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			// The bus counts time in nanoseconds since 1970 (int64): past
			// 2262 the start would wrap around to the beginning.
			if t.Year() < 1970 || t.Year() > 2261 {
				writeError(w, http.StatusBadRequest, "since", fmt.Sprintf("time %q is out of range: want a time between 1970 and 2261", s))
				return o, false
			}
			o.Since = t
		} else if p, err := bus.ParsePosition(s); err == nil {
			o.Start = p
		} else {
			writeError(w, http.StatusBadRequest, "since", fmt.Sprintf("want an RFC 3339 time, a sequence or sequence:index, got %q", s))
			return o, false
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxReadLimit {
			writeError(w, http.StatusBadRequest, "limit", fmt.Sprintf("want 1 to %d, got %q", maxReadLimit, s))
			return o, false
		}
		o.Limit = n
	}
	return o, true
}

func (m *Module) getEvents(w http.ResponseWriter, r *http.Request) {
	o, ok := readOptions(w, r, 100)
	if !ok {
		return
	}
	evs, next, err := m.deps.Bus.Read(r.Context(), o)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	if wantsCSV(r) {
		rows := [][]string{{"seq", "index", "subject", "id", "source", "type", "time", "data"}}
		for _, s := range evs {
			e := s.Event
			rows = append(rows, []string{u64(s.Position.Seq), itoa(s.Position.Index), s.Subject, e.ID, e.Source, e.Type,
				e.Time.Format(time.RFC3339Nano), string(e.Data)})
		}
		w.Header().Set("Ops-Next", next.String())
		writeCSV(w, rows)
		return
	}
	out := make([]StoredEvent, len(evs))
	for i, s := range evs {
		out[i] = StoredEvent{Seq: s.Position.Seq, Index: s.Position.Index, Subject: s.Subject, Stored: s.Stored, Event: s.Event}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out, "next": next.String()})
}

// streamEvents is a Server-Sent Events tail. Each event's SSE id is its
// position, so a reconnecting client (Last-Event-ID) resumes after it.
func (m *Module) streamEvents(w http.ResponseWriter, r *http.Request) {
	o, ok := readOptions(w, r, 0)
	if !ok {
		return
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		p, err := bus.ParsePosition(id)
		if err != nil {
			writeError(w, http.StatusBadRequest, "Last-Event-ID", err.Error())
			return
		}
		o.Start, o.Since = bus.Position{Seq: p.Seq, Index: p.Index + 1}, time.Time{}
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a tail lives longer than write_timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, ": ops tail "+o.Filter+"\n\n")
	_ = rc.Flush()

	ctx, cancel := contextUntil(r.Context(), m.streams)
	defer cancel()
	// Flow control end to end: the tail pulls from the bus only as fast as
	// this loop writes to the client (bus.Tail bounds what it holds), so a
	// reader that does not read falls behind instead of filling memory. A
	// write that cannot go out within sseWriteWait drops the reader.
	events := make(chan bus.Stored, 16)
	errc := make(chan error, 1)
	go func() {
		errc <- m.deps.Bus.Tail(ctx, o, func(s bus.Stored) error {
			select {
			case events <- s:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	deadline := func() { _ = rc.SetWriteDeadline(time.Now().Add(sseWriteWait)) }
	tooSlow := func() {
		// One last try to say why, then the connection goes.
		_ = rc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(w, "event: error\ndata: \"reader too slow: nothing could be written for "+sseWriteWait.String()+"; reconnect with Last-Event-ID to resume\"\n\n")
		_ = rc.Flush()
		m.slowReaders.Inc()
	}
	for {
		select {
		case s := <-events:
			b, err := json.Marshal(StoredEvent{Seq: s.Position.Seq, Index: s.Position.Index, Subject: s.Subject, Stored: s.Stored, Event: s.Event})
			if err != nil {
				continue
			}
			deadline()
			if _, err := fmt.Fprintf(w, "id: %s\nevent: event\ndata: %s\n\n", s.Position, b); err != nil {
				if isTimeout(err) {
					tooSlow()
				}
				return
			}
			if len(events) == 0 {
				if err := rc.Flush(); err != nil {
					if isTimeout(err) {
						tooSlow()
					}
					return
				}
			}
		case <-heartbeat.C:
			deadline()
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				if isTimeout(err) {
					tooSlow()
				}
				return
			}
		case err := <-errc:
			if err != nil && ctx.Err() == nil {
				fmt.Fprintf(w, "event: error\ndata: %q\n\n", err.Error())
				_ = rc.Flush()
			}
			return
		case <-ctx.Done():
			return
		}
	}
}

// sseWriteWait is how long a tail's write may wait on a reader that does
// not read before the reader is dropped.
const sseWriteWait = 30 * time.Second

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func wantsCSV(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "csv"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/csv")
}

func writeCSV(w http.ResponseWriter, rows [][]string) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	cw := csv.NewWriter(w)
	_ = cw.WriteAll(rows)
}

func u64(v uint64) string    { return strconv.FormatUint(v, 10) }
func i64(v int64) string     { return strconv.FormatInt(v, 10) }
func itoa(v int) string      { return strconv.Itoa(v) }
func join(s []string) string { return strings.Join(s, " ") }
