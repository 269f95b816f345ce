package enrich

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// decode turns a JSON literal into the event object shape processors pass in.
func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

// sameJSON compares through a JSON round trip, so a test states expected
// events as JSON and float64-vs-int differences cannot hide.
func sameJSON(t testing.TB, got map[string]any, want string) {
	t.Helper()
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("marshal result: %v", err)
	}
	var g, w any
	_ = json.Unmarshal(b, &g)
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

// quote renders s as a JSON string literal.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func mustNew(t testing.TB, name string, opts Options) Enricher {
	t.Helper()
	e, err := New(name, opts)
	if err != nil {
		t.Fatalf("New(%q, %v): %v", name, opts, err)
	}
	return e
}

func TestNames(t *testing.T) {
	want := []string{"anonymize_ip", "referrer", "session", "useragent", "utm"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, n := range Names() {
		if _, err := New(n, nil); err != nil {
			t.Errorf("New(%q, nil) with defaults: %v", n, err)
		}
		if len(Defaults(n)) == 0 {
			t.Errorf("Defaults(%q) is empty", n)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name   string
		use    string
		opts   Options
		want   string // exact error text
		option string // OptionError.Option, "" when not an OptionError
		is     error
	}{
		{"unknown enricher", "geoip", nil,
			`use: unknown enricher "geoip" (want one of anonymize_ip, referrer, session, useragent, utm)`, "", ErrUnknownEnricher},
		{"bad duration", "session", Options{"timeout": "soon"},
			`with.timeout: want a duration, got "soon"`, "timeout", ErrInvalidOption},
		{"zero duration", "session", Options{"timeout": "0s"},
			`with.timeout: want a positive duration, got "0s"`, "timeout", ErrInvalidOption},
		{"unknown key", "session", Options{"timout": "10m"},
			`with.timout: unknown option for session (want one of into, timeout)`, "timout", ErrInvalidOption},
		{"first unknown key in sorted order", "utm", Options{"zz": "1", "aa": "2", "into": "data"},
			`with.aa: unknown option for utm (want one of into, url_field)`, "aa", ErrInvalidOption},
		{"bad mode", "anonymize_ip", Options{"mode": "hash"},
			`with.mode: want one of truncate, drop, got "hash"`, "mode", ErrInvalidOption},
		{"empty path", "useragent", Options{"field": ""},
			`with.field: want a dot path such as data.context.ip, got ""`, "field", ErrInvalidOption},
		{"empty path segment", "referrer", Options{"into": "data..ref"},
			`with.into: want a dot path without empty parts, got "data..ref"`, "into", ErrInvalidOption},
		{"bad url_field", "referrer", Options{"url_field": ".url"},
			`with.url_field: want a dot path without empty parts, got ".url"`, "url_field", ErrInvalidOption},
		{"option of another enricher", "useragent", Options{"mode": "drop"},
			`with.mode: unknown option for useragent (want one of field, into)`, "mode", ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.use, tt.opts)
			if err == nil {
				t.Fatal("want an error, got nil")
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			var oe *OptionError
			if errors.As(err, &oe) != (tt.option != "") || (oe != nil && oe.Option != tt.option) {
				t.Errorf("OptionError = %+v, want option %q", oe, tt.option)
			}
		})
	}
}

func TestPath(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		path    string
		set     any
		want    string
		wantErr string
	}{
		{"creates intermediate objects", `{"data":{}}`, "data.context.ua", "x",
			`{"data":{"context":{"ua":"x"}}}`, ""},
		{"replaces null on the way", `{"data":null}`, "data.context.ua", "x",
			`{"data":{"context":{"ua":"x"}}}`, ""},
		{"overwrites the leaf", `{"data":{"a":[1]}}`, "data.a", "x",
			`{"data":{"a":"x"}}`, ""},
		{"top level", `{}`, "userid", "u", `{"userid":"u"}`, ""},
		{"blocked by a string", `{"data":{"context":"web"}}`, "data.context.ua", "x",
			`{"data":{"context":"web"}}`, "data.context: want an object to write data.context.ua into, got string"},
		{"blocked by an array", `{"data":[1,2]}`, "data.context.ua", "x",
			`{"data":[1,2]}`, "data: want an object to write data.context.ua into, got array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePath(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			obj := decode(t, tt.in)
			err = p.set(obj, tt.set)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("set: %v", err)
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrInvalidField) {
					t.Fatalf("set error = %v, want %q", err, tt.wantErr)
				}
			}
			sameJSON(t, obj, tt.want)
			if err == nil {
				if v, ok := p.get(obj); !ok || v != tt.set {
					t.Errorf("get after set = %v, %v", v, ok)
				}
				p.del(obj)
				if _, ok := p.get(obj); ok {
					t.Errorf("get after del still finds a value")
				}
			}
		})
	}
}

// An enricher whose into path is blocked reports the field instead of
// dropping the enrichment or overwriting client data.
func TestBlockedIntoIsFieldError(t *testing.T) {
	e := mustNew(t, "useragent", Options{"into": "data.context.ua.parsed"})
	obj := decode(t, `{"data":{"context":{"userAgent":"curl/8.5.0","ua":"raw"}}}`)
	err := e.Enrich(obj)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "data.context.ua" || !strings.Contains(err.Error(), "got string") {
		t.Fatalf("Enrich error = %v, want a FieldError on data.context.ua", err)
	}
}
