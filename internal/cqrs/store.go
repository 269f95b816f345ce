package cqrs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/event"
)

// HeaderVersion carries the aggregate's version after the message.
const HeaderVersion = "Ops-Version"

// ConflictError is an append whose expected version is not the current one.
type ConflictError struct {
	Expected, Current uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("version conflict: expected %d, current %d", e.Expected, e.Current)
}

// ErrInvalid wraps appends that are wrong whatever the state (bad names).
var ErrInvalid = errors.New("invalid")

// Store appends to and reads aggregates. It needs only a JetStream context,
// so a Go service can embed it against the same NATS as Ops.
type Store struct {
	js jetstream.JetStream
	b  *bus.Bus // for reading history; nil when embedded without Ops's bus
}

// NewStore returns a store on Ops's bus.
func NewStore(b *bus.Bus) *Store { return &Store{js: b.JetStream(), b: b} }

// Subject is where an aggregate's events live.
func Subject(typ, id string) string { return "agg." + typ + "." + id }

// ValidID checks an aggregate id: one subject token of letters, digits,
// '-', '_', ':', '@' (UUIDs, ULIDs, e-mail-like ids fit).
func ValidID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w: id must be 1 to 128 characters", ErrInvalid)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == ':' || r == '@') {
			return fmt.Errorf("%w: id may hold letters, digits, -, _, : and @, got %q", ErrInvalid, id)
		}
	}
	return nil
}

// Version returns the aggregate's current version (0 if it has no events)
// and the stream sequence of its last message.
func (s *Store) Version(ctx context.Context, typ, id string) (uint64, uint64, error) {
	v, seq, _, err := s.last(ctx, typ, id)
	return v, seq, err
}

// last reads the aggregate's last message: version, sequence, message id.
func (s *Store) last(ctx context.Context, typ, id string) (uint64, uint64, string, error) {
	st, err := s.js.Stream(ctx, bus.AggStream)
	if err != nil {
		return 0, 0, "", fmt.Errorf("%w: %v", bus.ErrUnavailable, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, Subject(typ, id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, "", nil
	}
	if err != nil {
		return 0, 0, "", fmt.Errorf("%w: %v", bus.ErrUnavailable, err)
	}
	v, err := strconv.ParseUint(m.Header.Get(HeaderVersion), 10, 64)
	if err != nil {
		return 0, 0, "", fmt.Errorf("message %d on %s has no %s header", m.Sequence, m.Subject, HeaderVersion)
	}
	return v, m.Sequence, m.Header.Get(jetstream.MsgIDHeader), nil
}

// Append stores evs as the next events of the aggregate if its version is
// still expected. It returns the new version. Events get the aggregate id as
// their subject attribute, and the time of the append when they have none.
// Retrying an append with the same expected version and event ids is safe:
// the bus recognises it and Append returns the version it produced.
func (s *Store) Append(ctx context.Context, typ, id string, expected uint64, evs []event.Event) (uint64, error) {
	if len(evs) == 0 {
		return 0, fmt.Errorf("%w: no events to append", ErrInvalid)
	}
	if err := ValidID(id); err != nil {
		return 0, err
	}
	cur, lastSeq, lastID, err := s.last(ctx, typ, id)
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	h := sha256.New()
	for i := range evs {
		e := &evs[i]
		if e.SpecVersion == "" {
			e.SpecVersion = event.SpecVersion
		}
		if e.ID == "" {
			e.ID = event.NewID()
		}
		if e.Source == "" {
			e.Source = "/ops/aggregate/" + typ
		}
		e.Subject = id
		e.Normalize(now)
		if err := e.Validate(); err != nil {
			return 0, fmt.Errorf("%w: events[%d]: %v", ErrInvalid, i, err)
		}
		h.Write([]byte(e.ID + "\x00"))
	}
	next := expected + uint64(len(evs))
	msgID := fmt.Sprintf("a:%s:%s:%d:%s", typ, id, expected, hex.EncodeToString(h.Sum(nil)[:12]))
	if cur != expected {
		// A retry of an append that was stored but whose answer was lost
		// finds its own message last: that is success, not a conflict.
		if cur == next && lastID == msgID {
			return next, nil
		}
		return 0, &ConflictError{Expected: expected, Current: cur}
	}
	var body []byte
	if len(evs) == 1 {
		body, err = evs[0].MarshalJSON()
	} else {
		body, err = event.EncodeBatch(evs)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	m := nats.NewMsg(Subject(typ, id))
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set(HeaderVersion, strconv.FormatUint(next, 10))
	m.Header.Set(bus.HeaderCount, strconv.Itoa(len(evs)))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(lastSeq, 10))
	_, err = s.js.PublishMsg(ctx, m)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		now, _, verr := s.Version(ctx, typ, id)
		if verr != nil {
			return 0, verr
		}
		return 0, &ConflictError{Expected: expected, Current: now}
	}
	if err != nil {
		return 0, fmt.Errorf("%w: append: %v", bus.ErrUnavailable, err)
	}
	return next, nil
}

// History returns the aggregate's events in order with their versions.
func (s *Store) History(ctx context.Context, typ, id string) ([]event.Event, error) {
	if s.b == nil {
		return nil, errors.New("history needs Ops's bus")
	}
	var out []event.Event
	pos := bus.Position{}
	for {
		evs, next, err := s.b.Read(ctx, bus.ReadOptions{Stream: bus.AggStream, Filter: Subject(typ, id), Start: pos, Limit: 10000})
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			out = append(out, e.Event)
		}
		if len(evs) == 0 {
			return out, nil
		}
		pos = next
	}
}
