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
	Dim    Dim
	Prop   string // for prop:<key> filters; Dim is DimEvent then
	Op     Op
	Values []string
	// globs are the Values holding *, compiled (nil for the others).
	globs []*regexp.Regexp
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
// Values are alternatives separated by "|".
func ParseFilters(s string) ([]Filter, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	parts := strings.Split(s, ";")
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
	f.Values = strings.Split(rest, "|")
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

// compile turns the values holding * into regular expressions (RE2:
// matching takes time linear in the value, whatever the pattern).
func (f *Filter) compile() {
	f.globs = make([]*regexp.Regexp, len(f.Values))
	for i, v := range f.Values {
		if (f.Op == OpIs || f.Op == OpIsNot) && strings.Contains(v, "*") {
			f.globs[i] = globRE(v)
		}
	}
}

// globRE compiles a glob (valid UTF-8): * within a path segment, **
// across segments, everything else literal.
func globRE(g string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for g != "" {
		i := strings.IndexByte(g, '*')
		if i < 0 {
			b.WriteString(regexp.QuoteMeta(g))
			break
		}
		b.WriteString(regexp.QuoteMeta(g[:i]))
		if strings.HasPrefix(g[i:], "**") {
			b.WriteString(".*")
			g = g[i+2:]
		} else {
			b.WriteString("[^/]*")
			g = g[i+1:]
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// match reports whether a value passes the filter's comparison (before
// negation, which the caller applies).
func (f *Filter) match(v string) bool {
	if f.globs == nil {
		f.compile()
	}
	for i, want := range f.Values {
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
