package graph

import (
	"fmt"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/bloblang"

	"github.com/opsgraph/ops/internal/event"
)

// Template is an output subject with computed parts: "ev.orders.${! this.data.country }".
// A computed value is confined to its token: '.', '*', '>' and spaces in it
// become '_', so it can never change the subject's shape.
type Template struct {
	src    string
	parts  []tplPart
	domain string // the token after "ev." when literal
}

type tplPart struct {
	lit  string
	expr *bloblang.Executor
}

// ParseTemplate parses and checks an output subject.
func ParseTemplate(s string) (Template, error) {
	t := Template{src: s}
	rest := s
	for {
		i := strings.Index(rest, "${!")
		if i < 0 {
			t.parts = append(t.parts, tplPart{lit: rest})
			break
		}
		t.parts = append(t.parts, tplPart{lit: rest[:i]})
		j := strings.Index(rest[i:], "}")
		if j < 0 {
			return t, fmt.Errorf("unclosed ${! in %q", s)
		}
		expr := strings.TrimSpace(rest[i+3 : i+j])
		exe, err := env.Parse("root = " + expr)
		if err != nil {
			return t, fmt.Errorf("in ${! %s }: %v", expr, err)
		}
		t.parts = append(t.parts, tplPart{expr: exe})
		rest = rest[i+j+1:]
	}
	p := t.Pattern()
	if !strings.HasPrefix(p, "ev.") {
		return t, fmt.Errorf("output subjects start with ev. (got %q)", s)
	}
	if err := event.ValidateFilter(p); err != nil {
		return t, fmt.Errorf("%q: %v", s, err)
	}
	if strings.Contains(p, ">") {
		return t, fmt.Errorf("%q: an output subject cannot hold '>'", s)
	}
	if toks := strings.Split(p, "."); len(toks) > 1 && toks[1] != "*" {
		t.domain = toks[1]
	}
	return t, nil
}

// Literal reports whether the subject has no computed part.
func (t Template) Literal() bool { return len(t.parts) == 1 }

// Pattern is the subject with each token holding a computed part as '*'.
func (t Template) Pattern() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr != nil {
			b.WriteString("\x00")
		} else {
			b.WriteString(p.lit)
		}
	}
	toks := strings.Split(b.String(), ".")
	for i, tok := range toks {
		if strings.Contains(tok, "\x00") {
			toks[i] = "*"
		}
	}
	return strings.Join(toks, ".")
}

var tokenSafe = strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_", "\t", "_", "\n", "_", "\r", "_")

// Render computes the subject for one event object.
func (t Template) Render(obj any) (string, error) {
	if t.Literal() {
		return t.parts[0].lit, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.expr.Query(obj)
		if err != nil {
			return "", fmt.Errorf("to: %w", err)
		}
		s := tokenSafe.Replace(bloblang.ValueToString(v))
		if s == "" {
			s = "_"
		}
		b.WriteString(s)
	}
	out := b.String()
	typ := strings.TrimPrefix(out, "ev.")
	if err := event.ValidateTypeTokens(typ); err != nil {
		return "", fmt.Errorf("to %q: %v", out, err)
	}
	// What an event's data computes may not pick a reserved domain: a
	// processor that publishes there names it in its to:.
	if _, ok := event.Reserved(typ); ok && t.domain == "" {
		return "", fmt.Errorf("to %q: the computed domain is reserved (docs/security.md); name a reserved domain literally in to:", out)
	}
	return out, nil
}

// Domain is the event domain the subject publishes to (the token after
// "ev."), or "" when that token is computed.
func (t Template) Domain() string { return t.domain }

func (t Template) String() string { return t.src }
