package analytics

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Op is how a filter compares.
type Op int

// Filter operators, as the API writes them.
const (
	OpIs          Op = iota // ==  (alternatives with |; * and ** globs on pages)
	OpIsNot                 // !=
	OpContains              // ~   (case-insensitive)
	OpNotContains           // !~
)

var opText = [...]string{"==", "!=", "~", "!~"}

// Filter selects by one dimension, or one custom property (Prop set).
type Filter struct {
	Dim  Dim
	Prop string // for prop:<key> filters; Dim is DimEvent then
	Op   Op
	// Values are as written: a backslash escapes the next character
	// (\; \| \* \\), so any value can be said.
	Values []string
	// globs are the Values holding an unescaped *, compiled (nil for the
	// others); lits are the Values unescaped.
	globs []*regexp.Regexp
	lits  []string
}

func (f Filter) String() string {
	name := f.Dim.String()
	if f.Prop != "" {
		name = "prop:" + f.Prop
	}
	return name + opText[f.Op] + strings.Join(f.Values, "|")
}

// FilterError names the filter that does not parse.
type FilterError struct {
	Filter string
	Msg    string
}

func (e *FilterError) Error() string { return fmt.Sprintf("filter %q: %s", e.Filter, e.Msg) }

// maxFilters bounds a query's filters.
const maxFilters = 20

// ParseFilters reads filters joined by ";": dimension, operator and value,
// such as page==/blog/**;source!=Google;utm_campaign~sale;prop:plan==pro.
// Values are alternatives separated by "|"; a backslash makes the next
// character plain (\; \| \* \\).
func ParseFilters(s string) ([]Filter, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	parts := splitUnescaped(s, ';')
	if len(parts) > maxFilters {
		return nil, &FilterError{Filter: s, Msg: fmt.Sprintf("more than %d filters", maxFilters)}
	}
	var out []Filter
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		f, err := parseFilter(p)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func parseFilter(p string) (Filter, error) {
	var f Filter
	i := strings.IndexAny(p, "=!~")
	if i <= 0 {
		return f, &FilterError{Filter: p, Msg: "want dimension, an operator (==, !=, ~, !~) and a value"}
	}
	name, rest := p[:i], p[i:]
	switch {
	case strings.HasPrefix(rest, "=="):
		f.Op, rest = OpIs, rest[2:]
	case strings.HasPrefix(rest, "!="):
		f.Op, rest = OpIsNot, rest[2:]
	case strings.HasPrefix(rest, "!~"):
		f.Op, rest = OpNotContains, rest[2:]
	case strings.HasPrefix(rest, "~"):
		f.Op, rest = OpContains, rest[1:]
	default:
		return f, &FilterError{Filter: p, Msg: "unknown operator: want ==, !=, ~ or !~"}
	}
	if key, ok := strings.CutPrefix(name, "prop:"); ok {
		if key == "" {
			return f, &FilterError{Filter: p, Msg: "prop: needs a property name"}
		}
		f.Dim, f.Prop = DimEvent, key
	} else {
		d, ok := DimByName(name)
		if !ok {
			return f, &FilterError{Filter: p, Msg: fmt.Sprintf("unknown dimension %q (known: %s, or prop:<name>)", name, strings.Join(dimNames[:], ", "))}
		}
		f.Dim = d
	}
	f.Values = splitUnescaped(rest, '|')
	if len(f.Values) > maxFilters {
		return f, &FilterError{Filter: p, Msg: fmt.Sprintf("more than %d alternatives", maxFilters)}
	}
	for _, v := range f.Values {
		if len(v) > maxValueLen {
			return f, &FilterError{Filter: p, Msg: fmt.Sprintf("a value is longer than %d bytes", maxValueLen)}
		}
		if !utf8.ValidString(v) {
			return f, &FilterError{Filter: p, Msg: "a value is not valid UTF-8"}
		}
	}
	f.compile()
	return f, nil
}

// splitUnescaped splits s at every sep not escaped by a backslash; the
// parts keep their escapes.
func splitUnescaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // the next byte is plain
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes the backslashes that escape; it reports whether an
// unescaped * was seen (a glob).
func unescape(v string) (string, bool) {
	if !strings.ContainsAny(v, `\*`) {
		return v, false
	}
	var b strings.Builder
	glob := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		case c == '*':
			glob = true
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), glob
}

// compile turns the values holding an unescaped * into regular
// expressions (RE2: matching takes time linear in the value, whatever the
// pattern) and unescapes the others.
func (f *Filter) compile() {
	f.globs = make([]*regexp.Regexp, len(f.Values))
	f.lits = make([]string, len(f.Values))
	for i, v := range f.Values {
		lit, glob := unescape(v)
		f.lits[i] = lit
		if glob && (f.Op == OpIs || f.Op == OpIsNot) {
			f.globs[i] = globRE(v)
		}
	}
}

// globRE compiles a glob as written (valid UTF-8): * within a path
// segment, ** across segments, an escaped character and everything else
// literal.
func globRE(g string) *regexp.Regexp {
	var b, lit strings.Builder
	b.WriteString("^")
	flush := func() {
		b.WriteString(regexp.QuoteMeta(lit.String()))
		lit.Reset()
	}
	for i := 0; i < len(g); i++ {
		switch c := g[i]; {
		case c == '\\' && i+1 < len(g):
			i++
			lit.WriteByte(g[i])
		case c == '*' && i+1 < len(g) && g[i+1] == '*':
			flush()
			b.WriteString(".*")
			i++
		case c == '*':
			flush()
			b.WriteString("[^/]*")
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// match reports whether a value passes the filter's comparison (before
// negation, which the caller applies).
func (f *Filter) match(v string) bool {
	if f.globs == nil {
		f.compile()
	}
	for i, want := range f.lits {
		switch f.Op {
		case OpIs, OpIsNot:
			if re := f.globs[i]; re != nil {
				if re.MatchString(v) {
					return true
				}
			} else if v == want {
				return true
			}
		case OpContains, OpNotContains:
			if strings.Contains(strings.ToLower(v), strings.ToLower(want)) {
				return true
			}
		}
	}
	return false
}

func (f *Filter) negated() bool { return f.Op == OpIsNot || f.Op == OpNotContains }
