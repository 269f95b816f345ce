package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func TestParseErrorsNameTheField(t *testing.T) {
	big := `{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":"` + strings.Repeat("x", 70000) + `"}`
	cases := []struct {
		name, in, field string
	}{
		{"malformed", `{"specversion":`, ""},
		{"not object", `"hello"`, ""},
		{"missing type", `{"specversion":"1.0","id":"1","source":"s"}`, "type"},
		{"missing id", `{"specversion":"1.0","source":"s","type":"a.b"}`, "id"},
		{"missing source", `{"specversion":"1.0","id":"1","type":"a.b"}`, "source"},
		{"missing specversion", `{"id":"1","source":"s","type":"a.b"}`, "specversion"},
		{"wrong specversion", `{"specversion":"0.3","id":"1","source":"s","type":"a.b"}`, "specversion"},
		{"type not string", `{"specversion":"1.0","id":"1","source":"s","type":5}`, "type"},
		{"wildcard type", `{"specversion":"1.0","id":"1","source":"s","type":"a.*"}`, "type"},
		{"space in type", `{"specversion":"1.0","id":"1","source":"s","type":"a b.c"}`, "type"},
		{"double dot", `{"specversion":"1.0","id":"1","source":"s","type":"a..c"}`, "type"},
		{"bad time", `{"specversion":"1.0","id":"1","source":"s","type":"a.b","time":"yesterday"}`, "time"},
		{"object extension", `{"specversion":"1.0","id":"1","source":"s","type":"a.b","userid":{}}`, "userid"},
		{"bad extension name", `{"specversion":"1.0","id":"1","source":"s","type":"a.b","User_Id":"x"}`, "User_Id"},
		{"too large", big, "event"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in), DefaultMaxBytes, now)
			if err == nil {
				t.Fatal("no error")
			}
			var fe *Error
			var se *SizeError
			switch {
			case errors.As(err, &fe):
				if fe.Field != c.field {
					t.Fatalf("field = %q, want %q (%v)", fe.Field, c.field, err)
				}
			case errors.As(err, &se):
				if se.Field != c.field || !errors.Is(err, ErrTooLarge) {
					t.Fatalf("size error field = %q, want %q", se.Field, c.field)
				}
			default:
				t.Fatalf("error %T %v has no field", err, err)
			}
		})
	}
}

func TestBatchErrorNamesIndex(t *testing.T) {
	in := `[{"specversion":"1.0","id":"1","source":"s","type":"a.b"},{"specversion":"1.0","id":"2","source":"s"}]`
	_, err := ParseBatch([]byte(in), DefaultMaxBytes, now)
	var fe *Error
	if !errors.As(err, &fe) || fe.Field != "events[1].type" {
		t.Fatalf("err = %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	in := `{"specversion":"1.0","id":"abc","source":"/shop","type":"track.page","subject":"u1","time":"2026-01-02T03:04:05.123Z","datacontenttype":"application/json","userid":"u1","n":3,"data":{"path":"/x","n":[1,2]}}`
	e, err := Parse([]byte(in), DefaultMaxBytes, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.BusSubject(); got != "ev.track.page" {
		t.Fatalf("subject %q", got)
	}
	out, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := Parse(out, DefaultMaxBytes, now)
	if err != nil {
		t.Fatal(err)
	}
	out2, _ := json.Marshal(e2)
	if string(out) != string(out2) {
		t.Fatalf("not stable:\n%s\n%s", out, out2)
	}
	if e2.Extensions["userid"] != "u1" || e2.Extensions["n"] != 3.0 || !e2.Time.Equal(e.Time) {
		t.Fatalf("lost attributes: %+v", e2)
	}
}

func TestTimeDefaultsToNow(t *testing.T) {
	e, err := Parse([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"a.b"}`), 0, now)
	if err != nil || !e.Time.Equal(now) {
		t.Fatalf("time %v err %v", e.Time, err)
	}
}

func TestValidateFilter(t *testing.T) {
	for _, ok := range []string{"ev.>", "ev.track.*", "ev.*.page", "ev.track.page"} {
		if err := ValidateFilter(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ev..x", "ev.>.x", "ev.a b", "ev.", "ev.tr*ck"} {
		if err := ValidateFilter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a := NewID()
	time.Sleep(2 * time.Millisecond)
	b := NewID()
	if !(a < b) || len(a) != 36 {
		t.Fatalf("%s !< %s", a, b)
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":{"x":1}}`))
	f.Add([]byte(`[{"specversion":"1.0","id":"1","source":"s","type":"a.b"}]`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"a.b","data_base64":"AAE="}`))
	f.Add([]byte(`{"type":"a..b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := ParseAny(b, DefaultMaxBytes, now)
		if err != nil {
			return
		}
		// The envelope scanner must never accept what encoding/json rejects.
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		// Whatever parses must encode, decode to the same, and keep a valid subject.
		enc, err := EncodeBatch(evs)
		if err != nil {
			t.Fatalf("encode accepted events: %v", err)
		}
		back, err := Decode(enc)
		if err != nil || len(back) != len(evs) {
			t.Fatalf("decode own encoding: %v", err)
		}
		for i := range back {
			if err := back[i].Validate(); err != nil {
				t.Fatalf("re-decoded event invalid: %v", err)
			}
			if back[i].ID != evs[i].ID || back[i].BusSubject() != evs[i].BusSubject() {
				t.Fatalf("round trip changed event %d", i)
			}
		}
	})
}
