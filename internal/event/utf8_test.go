package event

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestValidUTF8(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":"ok"}`:                     `{"a":"ok"}`,
		`{"a":"caf` + "\xc3\xa9" + `"}`:  `{"a":"café"}`,
		`{"a":"x` + "\xff" + `y"}`:       `{"a":"x` + "\uFFFD" + `y"}`,
		`{"a":"\ud800"}`:                 `{"a":"\ufffd"}`,
		`{"a":"\udc00x"}`:                `{"a":"\ufffdx"}`,
		`{"a":"\ud83d\ude00"}`:           `{"a":"\ud83d\ude00"}`,
		`{"a":"\ud83d\u0041"}`:           `{"a":"\ufffd\u0041"}`,
		`{"a":"\\ud800"}`:                `{"a":"\\ud800"}`, // an escaped backslash, not an escape
		`{"k` + "\xfe" + `":1}`:          `{"k` + "\uFFFD" + `":1}`,
		`{"a":"` + "\xed\xa0\x80" + `"}`: `{"a":"` + "\uFFFD\uFFFD\uFFFD" + `"}`, // a surrogate as raw bytes
	} {
		got := string(ValidUTF8([]byte(in)))
		if got != want {
			t.Errorf("ValidUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzValidUTF8: the output is valid UTF-8 without lone surrogate
// escapes, still valid JSON when the input was, and the same as the input
// when that was clean already.
func FuzzValidUTF8(f *testing.F) {
	for _, s := range []string{`{"a":"\ud800"}`, `["` + "\xff" + `"]`, `"\ud83d\ude00"`, `{"a":"b"}`, `"\\\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := ValidUTF8(b)
		if !utf8.Valid(out) {
			t.Fatalf("not UTF-8: %q -> %q", b, out)
		}
		if json.Valid(b) {
			if !json.Valid(out) {
				t.Fatalf("valid JSON became invalid: %q -> %q", b, out)
			}
		}
		if again := ValidUTF8(out); string(again) != string(out) {
			t.Fatalf("not idempotent (a lone surrogate left?): %q -> %q -> %q", b, out, again)
		}
		if utf8.Valid(b) && !hasSurrogateEscape(b) && string(out) != string(b) {
			t.Fatalf("clean input changed: %q -> %q", b, out)
		}
	})
}
