package enrich

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// sessionEvent builds a page event for visitor at the given time.
func sessionEvent(visitor, at string) map[string]any {
	return map[string]any{"time": at, "data": map[string]any{"anonymousId": visitor}}
}

func sessionOut(t testing.TB, obj map[string]any) map[string]any {
	t.Helper()
	s, ok := obj["data"].(map[string]any)["context"].(map[string]any)["session"].(map[string]any)
	if !ok {
		t.Fatalf("no data.context.session in %v", obj)
	}
	return s
}

func TestSessionBoundaries(t *testing.T) {
	type step struct {
		visitor, at string
		start       string // expected session start
		isNew       bool
		n           int
	}
	const t0 = "2024-05-01T10:00:00Z"
	tests := []struct {
		name    string
		timeout string
		steps   []step
	}{
		{"gap of exactly the timeout continues", "30m", []step{
			{"u1", t0, t0, true, 1},
			{"u1", "2024-05-01T10:30:00Z", t0, false, 2},
		}},
		{"gap just past the timeout starts a new session", "30m", []step{
			{"u1", t0, t0, true, 1},
			{"u1", "2024-05-01T10:30:00.000000001Z", "2024-05-01T10:30:00.000000001Z", true, 1},
		}},
		{"a session may last longer than the timeout", "30m", []step{
			{"u1", t0, t0, true, 1},
			{"u1", "2024-05-01T10:25:00Z", t0, false, 2},
			{"u1", "2024-05-01T10:50:00Z", t0, false, 3},
			{"u1", "2024-05-01T11:15:00Z", t0, false, 4},
		}},
		{"late event inside the session does not move Last back", "30m", []step{
			{"u1", t0, t0, true, 1},
			{"u1", "2024-05-01T10:10:00Z", t0, false, 2},
			{"u1", "2024-05-01T10:05:00Z", t0, false, 3},
			// 25m after Last (10:10), 35m after the late event: still the session.
			{"u1", "2024-05-01T10:35:00Z", t0, false, 4},
		}},
		{"late event up to the timeout before start joins", "30m", []step{
			{"u1", t0, t0, true, 1},
			{"u1", "2024-05-01T09:30:00Z", t0, false, 2},
		}},
		{"older late event gets its own session", "30m", []step{
			{"u1", "2024-05-01T11:00:00Z", "2024-05-01T11:00:00Z", true, 1},
			{"u1", "2024-05-01T10:29:59Z", "2024-05-01T10:29:59Z", true, 1},
			{"u1", "2024-05-01T11:10:00Z", "2024-05-01T11:00:00Z", false, 2},
		}},
		{"visitors are independent", "30m", []step{
			{"u1", t0, t0, true, 1},
			{"u2", "2024-05-01T10:05:00Z", "2024-05-01T10:05:00Z", true, 1},
			{"u1", "2024-05-01T10:06:00Z", t0, false, 2},
			{"u2", "2024-05-01T11:00:00Z", "2024-05-01T11:00:00Z", true, 1},
		}},
		{"offsets are the same instant", "30m", []step{
			{"u1", "2024-05-01T12:00:00+02:00", t0, true, 1},
			{"u1", "2024-05-01T10:10:00Z", t0, false, 2},
		}},
		{"timeout option", "10m", []step{
			{"u1", t0, t0, true, 1},
			{"u1", "2024-05-01T10:10:00Z", t0, false, 2},
			{"u1", "2024-05-01T10:20:01Z", "2024-05-01T10:20:01Z", true, 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustNew(t, "session", Options{"timeout": tt.timeout})
			for i, s := range tt.steps {
				obj := sessionEvent(s.visitor, s.at)
				if err := e.Enrich(obj); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				start, _ := time.Parse(time.RFC3339Nano, s.start)
				want := fmt.Sprintf(`{"id":%q,"start":%q,"new":%v,"n":%d}`,
					sessionID(s.visitor, start), start.UTC().Format(time.RFC3339Nano), s.isNew, s.n)
				sameJSON(t, sessionOut(t, obj), want)
			}
		})
	}
}

// Ids are a pure function of visitor and start: fixed values computed
// outside Go (printf 'u1\x002024-05-01T10:00:00Z' | sha256sum | cut -c1-16),
// and a replay into a fresh store gives the same ids.
func TestSessionIDDeterministic(t *testing.T) {
	tests := []struct{ visitor, at, want string }{
		{"u1", "2024-05-01T10:00:00Z", "515b2fb2fea2e237"},
		{"anon-7", "2024-05-01T10:00:00.500Z", "d58e6db17473ecb8"},
		{"u1", "2024-05-01T12:00:00+02:00", "515b2fb2fea2e237"},
	}
	for _, tt := range tests {
		obj := sessionEvent(tt.visitor, tt.at)
		if err := mustNew(t, "session", nil).Enrich(obj); err != nil {
			t.Fatal(err)
		}
		if got := sessionOut(t, obj)["id"]; got != tt.want {
			t.Errorf("id for %s at %s = %v, want %s", tt.visitor, tt.at, got, tt.want)
		}
	}

	times := []string{"2024-05-01T10:00:00Z", "2024-05-01T10:20:00Z", "2024-05-01T11:00:00Z", "2024-05-01T10:55:00Z", "2024-05-01T13:00:00Z"}
	run := func() []any {
		e := NewSession(30*time.Minute, "data.context.session", NewMemoryStore(10))
		var ids []any
		for _, at := range times {
			obj := sessionEvent("v", at)
			if err := e.Enrich(obj); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, sessionOut(t, obj)["id"])
		}
		return ids
	}
	a, b := run(), run()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("replay gave %v, first run %v", b, a)
	}
}

func TestSessionVisitor(t *testing.T) {
	const at = `"time":"2024-05-01T10:00:00Z"`
	tests := []struct {
		name, in string
		visitor  string // "" means the event must be unchanged
		wantErr  string
	}{
		{"userId first", `{` + at + `,"userid":"ext","data":{"userId":"u","anonymousId":"a"}}`, "u", ""},
		{"anonymousId next", `{` + at + `,"userid":"ext","data":{"anonymousId":"a"}}`, "a", ""},
		{"empty userId skipped", `{` + at + `,"data":{"userId":"","anonymousId":"a"}}`, "a", ""},
		{"numeric userId skipped", `{` + at + `,"data":{"userId":42,"anonymousId":"a"}}`, "a", ""},
		{"extension userid", `{` + at + `,"userid":"ext","anonymousid":"x","data":{}}`, "ext", ""},
		{"extension anonymousid", `{` + at + `,"anonymousid":"x"}`, "x", ""},
		{"data not an object", `{` + at + `,"anonymousid":"x","data":"text"}`, "x",
			"data: want an object to write data.context.session into, got string"},
		{"no visitor", `{` + at + `,"data":{"event":"e"}}`, "", ""},
		{"no visitor needs no time", `{"data":{}}`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decode(t, tt.in)
			err := mustNew(t, "session", nil).Enrich(obj)
			if tt.visitor == "" {
				if err != nil {
					t.Fatal(err)
				}
				sameJSON(t, obj, tt.in)
				return
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			start, _ := time.Parse(time.RFC3339, "2024-05-01T10:00:00Z")
			if got := sessionOut(t, obj)["id"]; got != sessionID(tt.visitor, start) {
				t.Errorf("id = %v, want the id of visitor %q", got, tt.visitor)
			}
		})
	}
}

func TestSessionTimeErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"missing", `{"data":{"userId":"u"}}`, "time: missing; sessions need the event time"},
		{"not a string", `{"time":1714557600,"data":{"userId":"u"}}`, "time: want an RFC 3339 timestamp, got number"},
		{"not RFC 3339", `{"time":"yesterday","data":{"userId":"u"}}`, `time: want an RFC 3339 timestamp, got "yesterday"`},
		{"no zone", `{"time":"2024-05-01T10:00:00","data":{"userId":"u"}}`, `time: want an RFC 3339 timestamp, got "2024-05-01T10:00:00"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decode(t, tt.in)
			err := mustNew(t, "session", nil).Enrich(obj)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "time" || err.Error() != tt.want || !errors.Is(err, ErrInvalidField) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			sameJSON(t, obj, tt.in)
		})
	}
}

func TestMemoryStoreEvictsLeastRecentlyUsed(t *testing.T) {
	s := NewMemoryStore(2)
	s.Put("a", SessionState{ID: "A"})
	s.Put("b", SessionState{ID: "B"})
	if _, ok := s.Get("a"); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	s.Put("c", SessionState{ID: "C"})
	if _, ok := s.Get("b"); ok {
		t.Error("b should have been evicted")
	}
	for _, v := range []string{"a", "c"} {
		if _, ok := s.Get(v); !ok {
			t.Errorf("%s evicted, want kept", v)
		}
	}
	s.Put("a", SessionState{ID: "A2"}) // update in place, no eviction
	if st, _ := s.Get("a"); st.ID != "A2" {
		t.Errorf("a = %+v after update", st)
	}
	if _, ok := s.Get("c"); !ok {
		t.Error("updating a evicted c")
	}

	one := NewMemoryStore(0) // clamped to 1
	one.Put("x", SessionState{})
	one.Put("y", SessionState{})
	if _, ok := one.Get("x"); ok {
		t.Error("store of size 0 kept two visitors")
	}
	if _, ok := one.Get("y"); !ok {
		t.Error("store of size 0 kept nothing")
	}
}

func TestNewSessionPanicsOnBadArguments(t *testing.T) {
	for _, tt := range []struct {
		timeout time.Duration
		into    string
	}{{0, "data.s"}, {time.Minute, ""}, {time.Minute, "data..s"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewSession(%v, %q) did not panic", tt.timeout, tt.into)
				}
			}()
			NewSession(tt.timeout, tt.into, NewMemoryStore(1))
		}()
	}
}

func TestNewSessionNilStore(t *testing.T) {
	e := NewSession(time.Minute, "data.s", nil)
	obj := sessionEvent("v", "2024-05-01T10:00:00Z")
	if err := e.Enrich(obj); err != nil {
		t.Fatal(err)
	}
	if _, ok := obj["data"].(map[string]any)["s"]; !ok {
		t.Fatal("no session written with the default store")
	}
}

// Concurrent events of one visitor must be counted once each; run with -race.
func TestSessionConcurrent(t *testing.T) {
	e := mustNew(t, "session", nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				at := time.Date(2024, 5, 1, 10, 0, g*50+i, 0, time.UTC).Format(time.RFC3339)
				if err := e.Enrich(sessionEvent("v", at)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	obj := sessionEvent("v", "2024-05-01T10:05:00Z")
	if err := e.Enrich(obj); err != nil {
		t.Fatal(err)
	}
	if n := sessionOut(t, obj)["n"]; n != float64(201) {
		t.Fatalf("n = %v after 201 events within one session, want 201", n)
	}
}
