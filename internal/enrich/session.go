package enrich

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// SessionState is what Session remembers about one visitor's current session.
type SessionState struct {
	ID          string
	Start, Last time.Time
	Events      int
}

// SessionStore holds SessionState per visitor. Session serialises its own
// Get/Put pairs, so a store needs to be safe for concurrent use only if it
// is shared by several Session enrichers.
type SessionStore interface {
	Get(visitor string) (SessionState, bool)
	Put(visitor string, s SessionState)
}

// Session assigns each event to a visit: a run of a visitor's events with no
// gap longer than the timeout.
//
// The visitor is data.userId, else data.anonymousId, else the extension
// attributes userid / anonymousid (the first non-empty string); an event
// without one is left unchanged. A visitor who identifies mid-visit (from
// anonymousId to userId) starts a new session. The event time is the
// top-level "time"; a missing or invalid time is an error, as there is no
// session without it.
//
// It writes {"id", "start", "new", "n"}: id is the first 16 hex characters
// of sha256(visitor + "\x00" + start), start is the session's first event
// time in RFC 3339 UTC, new is true for the event that started it, and n
// counts the session's events so far, this one included. Ids depend only on
// the visitor and the start time, so replaying the same events in the same
// order into an empty store gives the same ids.
//
// Events may arrive late. One older than the visitor's last event joins the
// current session if it is no more than the timeout before its start; older
// still, it gets a one-event session of its own (id from its own time) and
// the stored session is left as it was, so Last never moves backwards.
type Session struct {
	timeout time.Duration
	into    path
	store   SessionStore
	mu      sync.Mutex // makes each Get..Put on store atomic
}

var _ Enricher = (*Session)(nil)

// NewSession returns a session enricher with the given store; a nil store
// means NewMemoryStore(100_000), as New uses. It panics if timeout is not
// positive or into is not a dot path: those are programming errors here,
// while New reports them as option errors.
func NewSession(timeout time.Duration, into string, store SessionStore) Enricher {
	if timeout <= 0 {
		panic(fmt.Sprintf("enrich.NewSession: timeout %v is not positive", timeout))
	}
	p, err := parsePath(into)
	if err != nil {
		panic("enrich.NewSession: into: " + err.Error())
	}
	if store == nil {
		store = NewMemoryStore(defaultSessionVisitors)
	}
	return &Session{timeout: timeout, into: p, store: store}
}

// defaultSessionVisitors bounds memory to about 100k visitors active within
// roughly one timeout; a visitor evicted and seen again starts a new session.
const defaultSessionVisitors = 100_000

func buildSession(o Options) (Enricher, error) {
	timeout, err := optDuration(o, "timeout")
	if err != nil {
		return nil, err
	}
	into, err := optPath(o, "into")
	if err != nil {
		return nil, err
	}
	return &Session{timeout: timeout, into: into, store: NewMemoryStore(defaultSessionVisitors)}, nil
}

// Enrich implements Enricher. It fails on a missing or invalid time and on
// an into path blocked by a non-object value.
func (s *Session) Enrich(obj map[string]any) error {
	visitor := visitorOf(obj)
	if visitor == "" {
		return nil
	}
	t, err := eventTime(obj)
	if err != nil {
		return err
	}

	s.mu.Lock()
	st, ok := s.store.Get(visitor)
	var cur SessionState
	isNew := false
	switch {
	case !ok || t.Sub(st.Last) > s.timeout:
		// First event, or the gap since the last one is too long (a gap of
		// exactly the timeout still continues the session).
		cur = SessionState{ID: sessionID(visitor, t), Start: t, Last: t, Events: 1}
		isNew = true
		s.store.Put(visitor, cur)
	case !t.Before(st.Last):
		cur = st
		cur.Last = t
		cur.Events++
		s.store.Put(visitor, cur)
	case !t.Before(st.Start.Add(-s.timeout)):
		cur = st
		cur.Events++
		s.store.Put(visitor, cur)
	default:
		// Too old for the current session; not stored, so it cannot pull
		// Last backwards or end the visitor's current session.
		cur = SessionState{ID: sessionID(visitor, t), Start: t, Last: t, Events: 1}
		isNew = true
	}
	s.mu.Unlock()

	return s.into.set(obj, map[string]any{
		"id":    cur.ID,
		"start": cur.Start.Format(time.RFC3339Nano),
		"new":   isNew,
		"n":     float64(cur.Events), // float64: the decoded-JSON number type
	})
}

// visitorOf follows the Segment identity order: a known user before an
// anonymous one, and fields in data before extension attributes.
func visitorOf(obj map[string]any) string {
	if data, ok := obj["data"].(map[string]any); ok {
		for _, k := range [...]string{"userId", "anonymousId"} {
			if v, ok := data[k].(string); ok && v != "" {
				return v
			}
		}
	}
	for _, k := range [...]string{"userid", "anonymousid"} {
		if v, ok := obj[k].(string); ok && v != "" {
			return v
		}
	}
	return ""
}

func eventTime(obj map[string]any) (time.Time, error) {
	v, ok := obj["time"]
	if !ok {
		return time.Time{}, &FieldError{Field: "time", Problem: "missing; sessions need the event time"}
	}
	s, ok := v.(string)
	if !ok {
		return time.Time{}, &FieldError{Field: "time", Problem: "want an RFC 3339 timestamp, got " + jsonType(v)}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &FieldError{Field: "time", Problem: fmt.Sprintf("want an RFC 3339 timestamp, got %q", s)}
	}
	// UTC so that the same instant written with another offset gives the
	// same session id.
	return t.UTC(), nil
}

func sessionID(visitor string, start time.Time) string {
	h := sha256.Sum256([]byte(visitor + "\x00" + start.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(h[:8])
}

// memoryStore is an in-process SessionStore bounded to max visitors,
// evicting the least recently used. It is lost on restart: the first event
// of a visitor after a restart starts a new session.
type memoryStore struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *memoryEntry, most recently used first
	m   map[string]*list.Element
}

type memoryEntry struct {
	visitor string
	state   SessionState
}

var _ SessionStore = (*memoryStore)(nil)

// NewMemoryStore returns an in-memory SessionStore that keeps at most
// maxVisitors visitors (at least 1), evicting the least recently used. It
// is safe for concurrent use.
func NewMemoryStore(maxVisitors int) SessionStore {
	return &memoryStore{max: max(maxVisitors, 1), ll: list.New(), m: make(map[string]*list.Element)}
}

func (s *memoryStore) Get(visitor string) (SessionState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[visitor]
	if !ok {
		return SessionState{}, false
	}
	s.ll.MoveToFront(e)
	return e.Value.(*memoryEntry).state, true
}

func (s *memoryStore) Put(visitor string, st SessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[visitor]; ok {
		e.Value.(*memoryEntry).state = st
		s.ll.MoveToFront(e)
		return
	}
	s.m[visitor] = s.ll.PushFront(&memoryEntry{visitor: visitor, state: st})
	if s.ll.Len() > s.max {
		old := s.ll.Back()
		s.ll.Remove(old)
		delete(s.m, old.Value.(*memoryEntry).visitor)
	}
}

// UseStore replaces the session store, for a processor that keeps sessions
// in the bus so they survive restarts.
func (s *Session) UseStore(st SessionStore) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store = st
}

// Timeout is the inactivity that ends a session.
func (s *Session) Timeout() time.Duration { return s.timeout }
