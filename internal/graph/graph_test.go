package graph

import (
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
)

func load(t *testing.T, y string) (*Graph, error) {
	t.Helper()
	c, err := config.Parse([]byte(y))
	if err != nil {
		return nil, err
	}
	return Compile(c)
}

func TestCycleRejectedWithPath(t *testing.T) {
	y := `
processors:
  - name: a
    from: ev.x.in
    to: ev.x.mid
  - name: b
    from: ev.view.totals.*
    to: ev.x.in
views:
  - name: totals
    from: ev.x.mid
    key: this.data.k
    measures: {n: count}
`
	_, err := load(t, y)
	if err == nil || !strings.Contains(err.Error(), "cycle: processor a -> view totals -> processor b -> processor a") {
		t.Fatalf("err = %v", err)
	}
	// Declared bounded, the same graph is accepted.
	g, err := load(t, strings.Replace(y, "    to: ev.x.in\n", "    to: ev.x.in\n    bounded: true\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Edges) != 3 {
		t.Fatalf("edges %+v", g.Edges)
	}
}

func TestSelfLoopThroughWildcard(t *testing.T) {
	_, err := load(t, `
processors:
  - name: everything
    from: ev.>
    to: ev.copy.x
`)
	if err == nil || !strings.Contains(err.Error(), "processor everything -> processor everything") {
		t.Fatalf("a processor on ev.> consumes its own output: %v", err)
	}
}

func TestCompileErrorsNameTheField(t *testing.T) {
	_, err := load(t, `
processors:
  - name: p
    from: ev.a.b
    where: this.data.x >
    map: |
      root = this.data
      root.y = this.nope(
    to: ev.${! this.data.k 
views:
  - name: v
    from: track.page
    key: {path: this.data.path}
    measures:
      n: count(this.x)
      s: sum
      w: median(this.x)
`)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"processors[0].where:", "processors[0].map:", "processors[0].to: unclosed", "views[0].from[0]: event subjects start with ev.",
		"views[0].measures.n: count takes no expression", "views[0].measures.s: sum needs an expression", `views[0].measures.w: unknown measure "median"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestImpureFunctionsRefused(t *testing.T) {
	for _, m := range []string{`root = env("HOME")`, `root = file("/etc/passwd")`} {
		_, err := load(t, "processors:\n  - name: p\n    from: ev.a.b\n    to: ev.c.d\n    map: '"+m+"'\n")
		if err == nil {
			t.Errorf("%s accepted", m)
		}
	}
}

func TestOverlaps(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"ev.a.b", "ev.a.b", true}, {"ev.a.b", "ev.a.c", false}, {"ev.a.*", "ev.a.b", true},
		{"ev.>", "ev.a.b", true}, {"ev.a", "ev.a.b", false}, {"ev.a.>", "ev.a", false},
		{"ev.*.b", "ev.a.*", true}, {"ev.view.v.*", "ev.view.>", true}, {"ev.view.v.*", "ev.view.w.*", false},
	} {
		if got := Overlaps(c.a, c.b); got != c.want {
			t.Errorf("Overlaps(%s, %s) = %v", c.a, c.b, got)
		}
		if got := Overlaps(c.b, c.a); got != c.want {
			t.Errorf("Overlaps(%s, %s) = %v (reversed)", c.b, c.a, got)
		}
	}
}

func TestTemplate(t *testing.T) {
	tp, err := ParseTemplate("ev.orders.${! this.data.country.lowercase() }.placed")
	if err != nil {
		t.Fatal(err)
	}
	if tp.Pattern() != "ev.orders.*.placed" {
		t.Fatalf("pattern %s", tp.Pattern())
	}
	e, _ := event.New("/t", "a.b", map[string]string{"country": "D.E *>"})
	obj, _ := Object(&e)
	s, err := tp.Render(obj)
	if err != nil || s != "ev.orders.d_e___.placed" {
		t.Fatalf("render %q %v", s, err)
	}
	if _, err := ParseTemplate("orders.x"); err == nil {
		t.Fatal("subject outside ev. accepted")
	}
}

func TestRender(t *testing.T) {
	g, err := load(t, `
processors:
  - name: trending
    from: ev.view.hourly.updated
    where: this.data.new.views > 100
    to: ev.alert.trending
views:
  - name: hourly
    from: ev.track.page
    key: {path: this.data.path}
    window: 1h
    measures: {views: count}
`)
	if err != nil {
		t.Fatal(err)
	}
	m := g.Mermaid()
	for _, want := range []string{`in_ev_track_page[("ev.track.page")]`, "in_ev_track_page --> view_hourly", "view_hourly -->|ev.view.hourly.*| processor_trending"} {
		if !strings.Contains(m, want) {
			t.Errorf("mermaid lacks %q:\n%s", want, m)
		}
	}
	d := g.DOT()
	if !strings.Contains(d, `"view hourly" -> "processor trending" [label="ev.view.hourly.*"];`) {
		t.Errorf("dot:\n%s", d)
	}
}

// FuzzCompile loads arbitrary YAML through the config loader and the graph
// compiler (Bloblang included): never a panic, and an accepted graph is
// acyclic and renders.
func FuzzCompile(f *testing.F) {
	f.Add([]byte("processors:\n  - name: a\n    from: ev.x\n    map: root = this\n    to: ev.y.${! this.id }\n"))
	f.Add([]byte("views:\n  - name: v\n    from: ev.x.>\n    key: {k: this.data.k}\n    window: 1h\n    measures: {n: count, s: 'sum(this.data.v)', l: 'latest(root = this.state)'}\n"))
	f.Add([]byte("processors:\n  - name: a\n    from: ev.>\n    to: ev.a\n    bounded: true\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := config.Parse(b)
		if err != nil {
			return
		}
		g, err := Compile(c)
		if err != nil {
			return
		}
		if g.cycle() != nil {
			t.Fatal("accepted a cyclic graph")
		}
		_ = g.Mermaid()
		_ = g.DOT()
		if _, err := g.JSON(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestEnricherConfig(t *testing.T) {
	_, err := load(t, `
processors:
  - name: s
    from: ev.a.b
    use: session
    with: {timeout: soon}
    to: ev.a.c
  - name: g
    from: ev.a.b
    use: geoip
    to: ev.a.d
`)
	for _, want := range []string{`processors[0].with.timeout: want a duration, got "soon"`, `processors[1].use: use: unknown enricher "geoip"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if _, err := load(t, "processors:\n  - name: w\n    from: ev.a.b\n    with: {x: y}\n    to: ev.a.e\n"); err == nil ||
		!strings.Contains(err.Error(), "processors[0].with: options for an enricher") {
		t.Errorf("with without use: %v", err)
	}
	g, err := load(t, "processors:\n  - name: ua\n    from: ev.a.b\n    use: useragent\n    to: ev.a.c\n")
	if err != nil || g.Processors[0].Enricher == nil {
		t.Fatalf("useragent: %v", err)
	}
}
