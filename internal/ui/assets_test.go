package ui

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestPickEncoding(t *testing.T) {
	for h, want := range map[string]string{
		"":                           "",
		"gzip, deflate, br, zstd":    "br",
		"gzip":                       "gzip",
		"x-gzip":                     "gzip",
		"GZIP;Q=0.8":                 "gzip",
		"br;q=0":                     "",
		"br;q=0, gzip;q=0.1":         "gzip",
		"gzip;q=1, br;q=0.5":         "gzip",
		"*":                          "br",
		"*;q=0":                      "",
		"*;q=0.5, br;q=0":            "gzip",
		"identity":                   "",
		"br;q=2":                     "", // out of range: refused
		"br;q=abc, gzip":             "gzip",
		" , ,br":                     "br",
		"deflate;q=1, compress;q=.5": "",
	} {
		if got := pickEncoding(h); got != want {
			t.Errorf("pickEncoding(%q) = %q, want %q", h, got, want)
		}
	}
}

// FuzzPickEncoding: any header gives one of the three answers, and a
// coding is never chosen that the header does not let in.
func FuzzPickEncoding(f *testing.F) {
	for _, s := range []string{"gzip, br", "br;q=0", "*;q=0.1", "gzip;q=1;x=y", ",,;;==", "\x00br"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		got := pickEncoding(h)
		lower := strings.ToLower(h)
		switch got {
		case "":
		case "br":
			if !strings.Contains(lower, "br") && !strings.Contains(lower, "*") {
				t.Fatalf("%q gave br", h)
			}
		case "gzip":
			if !strings.Contains(lower, "gzip") && !strings.Contains(lower, "*") {
				t.Fatalf("%q gave gzip", h)
			}
		default:
			t.Fatalf("%q gave %q", h, got)
		}
		_ = matches(h, `"x"`)
	})
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		h    string
		want bool
	}{{`"a-br"`, true}, {`W/"a-br"`, true}, {`"b", "a-br"`, true}, {`*`, true}, {`"a"`, false}, {``, false}, {`a-br`, false}} {
		if got := matches(c.h, `"a-br"`); got != c.want {
			t.Errorf("matches(%q) = %v", c.h, got)
		}
	}
}

// TestEveryPermissionTheUIChecksIsComputed: pages show controls by
// {{index .Can "x"}} and app.js by can('x'); only the permissions in
// uiPerms are computed for a request, so one missing there hides its
// controls from everyone (the Alerts page's silence form once did).
func TestEveryPermissionTheUIChecksIsComputed(t *testing.T) {
	js, err := os.ReadFile("../../web/src/app.js")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`index \.Can "([a-z]+:[a-z]+)"`).FindAllStringSubmatch(layout+bodies, -1) {
		used[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`can\('([a-z]+:[a-z]+)'\)`).FindAllStringSubmatch(string(js), -1) {
		used[m[1]] = true
	}
	if len(used) < 5 {
		t.Fatalf("found only %v: the patterns no longer match the templates", used)
	}
	for p := range used {
		if !slices.Contains(uiPerms, p) {
			t.Errorf("%s is checked by the UI but not in uiPerms: its controls never show", p)
		}
	}
}
