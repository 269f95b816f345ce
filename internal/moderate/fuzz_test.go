package moderate

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzFind: any text is searched without a panic, hits lie inside the
// text in order, and masking keeps the text's length in runes.
func FuzzFind(f *testing.F) {
	m, err := NewMatcher(nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"f.u.c.k", "f*ck sh1t", "a$$hole", "ｆｕｃｋ", "* # ! @", "Scheiße", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hits := m.Find(s)
		last := 0
		for _, h := range hits {
			if h.Start < last || h.End > len(s) || h.Start >= h.End {
				t.Fatalf("%q: hit %+v out of place", s, h)
			}
			last = h.End
		}
		if utf8.ValidString(s) {
			if masked := Mask(s, hits); utf8.RuneCountInString(masked) != utf8.RuneCountInString(s) {
				t.Fatalf("%q masked to %q", s, masked)
			}
		}
	})
}

// FuzzFields: any body of any type parses or fails with an error.
func FuzzFields(f *testing.F) {
	f.Add("application/json", `{"comment":{"text":"x"},"a":[1,{"b":"c"}]}`, "comment.text")
	f.Add("application/x-www-form-urlencoded", "body=a%20b&x=1", "body")
	f.Add("multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nhi\r\n--X--\r\n", "body")
	f.Fuzz(func(t *testing.T, ct, body, field string) {
		vals, err := Fields(ct, []byte(body), strings.Split(field, ","))
		if err == nil && len(vals) > 0 && !strings.HasPrefix(strings.ToLower(ct), "multipart/") {
			_, _ = SetFields(ct, []byte(body), vals)
		}
	})
}
