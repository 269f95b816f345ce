package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/redpanda-data/benthos/v4/public/bloblang"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/enrich"
	"github.com/opsgraph/ops/internal/event"
)

// env is the Bloblang environment of every mapping: pure functions only, so
// a mapping gives the same output for the same input (replays and retries
// depend on that) and cannot read files or environment variables.
var env = bloblang.NewEnvironment().OnlyPure().WithDisabledImports().WithMaxMapRecursion(64)

// Processor is a compiled processor.
type Processor struct {
	Spec     config.Processor
	Where    *bloblang.Executor
	Map      *bloblang.Executor
	Enricher enrich.Enricher // from use:, nil without
	To       Template
}

// KeyField is one key column of a view.
type KeyField struct {
	Name string
	Expr *bloblang.Executor
}

// Measure kinds.
const (
	Count  = "count"
	Sum    = "sum"
	Min    = "min"
	Max    = "max"
	Avg    = "avg"
	Last   = "last"
	Uniq   = "uniq"
	Latest = "latest"
)

// Measure is one compiled measure of a view.
type Measure struct {
	Name string
	Kind string
	Expr *bloblang.Executor // nil for count and plain latest
	Src  string
}

// View is a compiled view.
type View struct {
	Spec     config.View
	Where    *bloblang.Executor
	Keys     []KeyField
	Measures []Measure
}

// Node is a processor or a view in the graph.
type Node struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"` // processor or view
	From    []string `json:"from"`
	Emits   []string `json:"emits"` // subject patterns it publishes
	Bounded bool     `json:"bounded,omitempty"`
	path    string
}

// Edge says that From publishes on Subject, which To consumes.
type Edge struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// Graph is the compiled, checked graph.
type Graph struct {
	Processors []*Processor `json:"-"`
	Views      []*View      `json:"-"`
	Aggregates []*Aggregate `json:"-"`
	Nodes      []Node       `json:"nodes"`
	Edges      []Edge       `json:"edges"`
}

// Compile parses every mapping and checks the graph. Errors name the field:
// "processors[1].map: line 2: ...".
func Compile(c *config.Config) (*Graph, error) {
	g := &Graph{}
	var errs config.Errors
	add := func(path, format string, a ...any) {
		errs = append(errs, &config.FieldError{Path: path, Msg: fmt.Sprintf(format, a...)})
	}
	for i, ps := range c.Processors {
		path := fmt.Sprintf("processors[%d]", i)
		p := &Processor{Spec: ps}
		p.Where = parseExpr(add, path+".where", ps.Where)
		if ps.Map != "" {
			p.Map = parseMapping(add, path+".map", ps.Map)
		}
		if ps.Use != "" {
			en, err := enrich.New(ps.Use, enrich.Options(ps.With))
			var oe *enrich.OptionError
			switch {
			case errors.As(err, &oe):
				add(path+".with."+oe.Option, "%s", oe.Problem)
			case err != nil:
				add(path+".use", "%v", err)
			}
			p.Enricher = en
		}
		t, err := ParseTemplate(ps.To)
		if err != nil {
			add(path+".to", "%v", err)
		}
		p.To = t
		checkFrom(add, path, ps.From)
		g.Processors = append(g.Processors, p)
		g.Nodes = append(g.Nodes, Node{Name: ps.Name, Kind: "processor", From: ps.From, path: path, Bounded: ps.Bounded,
			Emits: []string{t.Pattern(), "ev.deadletter." + ps.Name}})
	}
	for i, vs := range c.Views {
		path := fmt.Sprintf("views[%d]", i)
		v := &View{Spec: vs}
		v.Where = parseExpr(add, path+".where", vs.Where)
		for _, k := range vs.Key {
			v.Keys = append(v.Keys, KeyField{Name: k.Name, Expr: parseExpr(add, path+".key."+k.Name, k.Value)})
		}
		for _, m := range vs.Measures {
			ms, err := parseMeasure(m.Name, m.Value)
			if err != nil {
				add(path+".measures."+m.Name, "%v", err)
			}
			v.Measures = append(v.Measures, ms)
		}
		checkFrom(add, path, vs.From)
		g.Views = append(g.Views, v)
		g.Nodes = append(g.Nodes, Node{Name: vs.Name, Kind: "view", From: vs.From, path: path, Bounded: vs.Bounded,
			Emits: []string{"ev.view." + vs.Name + ".*", "ev.deadletter." + vs.Name}})
	}
	g.Aggregates = compileAggregates(c, add)
	if len(errs) > 0 {
		return nil, errs
	}
	g.link()
	if cyc := g.cycle(); cyc != nil {
		return nil, config.Errors{{Path: cyc[0].path, Msg: "cycle: " + cyclePath(cyc) +
			"; break it, or set bounded: true on a node whose logic ends it"}}
	}
	return g, nil
}

func checkFrom(add func(string, string, ...any), path string, from []string) {
	for j, f := range from {
		if err := event.ValidateFilter(f); err != nil {
			add(fmt.Sprintf("%s.from[%d]", path, j), "%v", err)
		} else if !Overlaps(f, "ev.>") {
			add(fmt.Sprintf("%s.from[%d]", path, j), "event subjects start with ev. (got %q)", f)
		}
	}
}

func parseExpr(add func(string, string, ...any), path, src string) *bloblang.Executor {
	if strings.TrimSpace(src) == "" {
		return nil
	}
	if !strings.Contains(src, "root") {
		src = "root = " + src
	}
	return parseMapping(add, path, src)
}

func parseMapping(add func(string, string, ...any), path, src string) *bloblang.Executor {
	exe, err := env.Parse(src)
	if err != nil {
		add(path, "%v", err)
		return nil
	}
	return exe
}

var measureRE = regexp.MustCompile(`(?s)^\s*([a-z]+)\s*(?:\((.*)\))?\s*$`)

func parseMeasure(name, src string) (Measure, error) {
	m := Measure{Name: name, Src: src}
	sub := measureRE.FindStringSubmatch(src)
	if sub == nil {
		return m, fmt.Errorf("want count, sum(expr), min(expr), max(expr), avg(expr), last(expr), uniq(expr), latest or latest(mapping); got %q", src)
	}
	m.Kind = sub[1]
	arg := strings.TrimSpace(sub[2])
	switch m.Kind {
	case Count:
		if arg != "" {
			return m, fmt.Errorf("count takes no expression")
		}
		return m, nil
	case Latest:
		if arg == "" {
			return m, nil
		}
	case Sum, Min, Max, Avg, Last, Uniq:
		if arg == "" {
			return m, fmt.Errorf("%s needs an expression: %s(this.data.x)", m.Kind, m.Kind)
		}
	default:
		return m, fmt.Errorf("unknown measure %q (count, sum, min, max, avg, last, uniq, latest)", m.Kind)
	}
	if !strings.Contains(arg, "root") {
		arg = "root = " + arg
	}
	exe, err := env.Parse(arg)
	if err != nil {
		return m, err
	}
	m.Expr = exe
	return m, nil
}

// Overlaps reports whether two subject patterns can match a common subject.
func Overlaps(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(at) && i == len(bt):
			return true
		case i < len(at) && at[i] == ">":
			return i < len(bt)
		case i < len(bt) && bt[i] == ">":
			return i < len(at)
		case i == len(at) || i == len(bt):
			return false
		case at[i] == "*" || bt[i] == "*" || at[i] == bt[i]:
		default:
			return false
		}
	}
}

// Chain returns the nodes on a path from events on subject from to a node
// that publishes on a subject overlapping to (from and to may be
// patterns), in the graph's order: the nodes whose work must be done
// before what from caused shows up on to.
func (g *Graph) Chain(from, to string) []Node {
	next, prev := map[string][]string{}, map[string][]string{}
	for _, e := range g.Edges {
		next[e.From] = append(next[e.From], e.To)
		prev[e.To] = append(prev[e.To], e.From)
	}
	walk := func(start []string, adj map[string][]string) map[string]bool {
		seen := map[string]bool{}
		for len(start) > 0 {
			n := start[len(start)-1]
			start = start[:len(start)-1]
			if !seen[n] {
				seen[n] = true
				start = append(start, adj[n]...)
			}
		}
		return seen
	}
	var heads, tails []string
	for _, n := range g.Nodes {
		for _, f := range n.From {
			if Overlaps(f, from) {
				heads = append(heads, n.Name)
				break
			}
		}
		for _, e := range n.Emits {
			if Overlaps(e, to) {
				tails = append(tails, n.Name)
				break
			}
		}
	}
	fwd, back := walk(heads, next), walk(tails, prev)
	var out []Node
	for _, n := range g.Nodes {
		if fwd[n.Name] && back[n.Name] {
			out = append(out, n)
		}
	}
	return out
}

func (g *Graph) link() {
	for _, a := range g.Nodes {
		for _, b := range g.Nodes {
			for _, out := range a.Emits {
				for _, in := range b.From {
					if Overlaps(out, in) {
						g.Edges = append(g.Edges, Edge{From: a.Name, To: b.Name, Subject: out})
					}
				}
			}
		}
	}
}

// cycle returns the nodes of an unbounded cycle, first node repeated last.
func (g *Graph) cycle() []Node {
	byName := map[string]Node{}
	next := map[string][]string{}
	for _, n := range g.Nodes {
		byName[n.Name] = n
	}
	for _, e := range g.Edges {
		if !byName[e.From].Bounded && !byName[e.To].Bounded {
			next[e.From] = append(next[e.From], e.To)
		}
	}
	state := map[string]int{}
	var stack []string
	var found []string
	var visit func(n string) bool
	visit = func(n string) bool {
		state[n] = 1
		stack = append(stack, n)
		for _, m := range next[n] {
			if state[m] == 1 {
				for i, s := range stack {
					if s == m {
						found = append(append([]string{}, stack[i:]...), m)
						return true
					}
				}
			}
			if state[m] == 0 && visit(m) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = 2
		return false
	}
	names := make([]string, 0, len(g.Nodes))
	for _, n := range g.Nodes {
		names = append(names, n.Name)
	}
	for _, n := range names {
		if state[n] == 0 && visit(n) {
			out := make([]Node, len(found))
			for i, s := range found {
				out[i] = byName[s]
			}
			return out
		}
	}
	return nil
}

func cyclePath(ns []Node) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprintf("%s %s", n.Kind, n.Name)
	}
	return strings.Join(parts, " -> ")
}

// Mermaid renders the graph as a Mermaid flowchart.
func (g *Graph) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	sources := g.sources()
	for _, s := range sources {
		fmt.Fprintf(&b, "  %s[(\"%s\")]\n", mermaidID("in", s), s)
	}
	for _, n := range g.Nodes {
		shape := "[\"%s\"]"
		if n.Kind == "view" {
			shape = "[[\"%s\"]]"
		}
		fmt.Fprintf(&b, "  %s"+shape+"\n", mermaidID(n.Kind, n.Name), n.Kind+" "+n.Name)
	}
	for _, s := range sources {
		for _, n := range g.Nodes {
			for _, f := range n.From {
				if f == s {
					fmt.Fprintf(&b, "  %s --> %s\n", mermaidID("in", s), mermaidID(n.Kind, n.Name))
				}
			}
		}
	}
	kinds := g.kinds()
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "  %s -->|%s| %s\n", mermaidID(kinds[e.From], e.From), e.Subject, mermaidID(kinds[e.To], e.To))
	}
	return b.String()
}

// DOT renders the graph for Graphviz.
func (g *Graph) DOT() string {
	var b strings.Builder
	b.WriteString("digraph ops {\n  rankdir=LR;\n")
	for _, s := range g.sources() {
		fmt.Fprintf(&b, "  %q [shape=cylinder];\n", s)
	}
	for _, n := range g.Nodes {
		shape := "box"
		if n.Kind == "view" {
			shape = "box3d"
		}
		fmt.Fprintf(&b, "  %q [shape=%s];\n", n.Kind+" "+n.Name, shape)
		for _, f := range n.From {
			if g.isSource(f) {
				fmt.Fprintf(&b, "  %q -> %q;\n", f, n.Kind+" "+n.Name)
			}
		}
	}
	kinds := g.kinds()
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "  %q -> %q [label=%q];\n", kinds[e.From]+" "+e.From, kinds[e.To]+" "+e.To, e.Subject)
	}
	b.WriteString("}\n")
	return b.String()
}

// JSON is the graph as GET /api/v1/graph returns it.
func (g *Graph) JSON() ([]byte, error) {
	type out struct {
		Sources []string `json:"sources"`
		Nodes   []Node   `json:"nodes"`
		Edges   []Edge   `json:"edges"`
	}
	o := out{Sources: g.sources(), Nodes: g.Nodes, Edges: g.Edges}
	if o.Nodes == nil {
		o.Nodes = []Node{}
	}
	if o.Edges == nil {
		o.Edges = []Edge{}
	}
	return json.Marshal(o)
}

// sources are consumed subjects no node emits: what producers outside the
// graph (the API, collectors) feed in.
func (g *Graph) sources() []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range g.Nodes {
		for _, f := range n.From {
			if !seen[f] && g.isSource(f) {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (g *Graph) isSource(f string) bool {
	for _, n := range g.Nodes {
		for _, e := range n.Emits {
			if Overlaps(e, f) && !strings.HasSuffix(f, ">") {
				return false
			}
		}
	}
	return true
}

func (g *Graph) kinds() map[string]string {
	k := map[string]string{}
	for _, n := range g.Nodes {
		k[n.Name] = n.Kind
	}
	return k
}

func mermaidID(kind, name string) string {
	r := strings.NewReplacer(".", "_", ">", "gt", "*", "star", "-", "_")
	return kind + "_" + r.Replace(name)
}

// Window returns the start of the tumbling window holding t.
func Window(t time.Time, size time.Duration) time.Time {
	if size <= 0 {
		return time.Time{}
	}
	return t.UTC().Truncate(size)
}

// ParseExpr compiles a Bloblang expression ("this.x > 1") or mapping in the
// pure environment every node uses.
func ParseExpr(src string) (*bloblang.Executor, error) {
	if !strings.Contains(src, "root") {
		src = "root = " + src
	}
	return env.Parse(src)
}

// Aggregate is a compiled aggregate type.
type Aggregate struct {
	Type     string
	State    *bloblang.Executor // nil: merge event data
	Commands map[string]*Command
}

// Command is a compiled command.
type Command struct {
	Name  string
	Check *bloblang.Executor // nil: always allowed
	Emit  *bloblang.Executor
}

func compileAggregates(c *config.Config, add func(string, string, ...any)) []*Aggregate {
	var out []*Aggregate
	for i, a := range c.Aggregates {
		path := fmt.Sprintf("aggregates[%d]", i)
		ag := &Aggregate{Type: a.Type, Commands: map[string]*Command{}}
		if a.State != "" {
			ag.State = parseExpr(add, path+".state", a.State)
		}
		for j, cmd := range a.Commands {
			cp := fmt.Sprintf("%s.commands[%d]", path, j)
			ag.Commands[cmd.Name] = &Command{Name: cmd.Name, Check: parseExpr(add, cp+".check", cmd.Check), Emit: parseExpr(add, cp+".emit", cmd.Emit)}
		}
		out = append(out, ag)
	}
	return out
}
