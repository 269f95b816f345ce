package config

import (
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Processor is one event processor of the graph (see docs/graph.md). Its
// Bloblang is compiled and checked by internal/graph, not here.
type Processor struct {
	Name    string            `yaml:"name" doc:"unique; a subject token"`
	From    Strings           `yaml:"from" doc:"subject filters to consume, e.g. ev.track.page"`
	Where   string            `yaml:"where" doc:"Bloblang condition over the event; false skips it"`
	Map     string            `yaml:"map" doc:"Bloblang mapping; its result is the output event's data"`
	Use     string            `yaml:"use" doc:"a built-in enricher instead of map (see docs/enrichers.md)"`
	With    map[string]string `yaml:"with" doc:"the enricher's options"`
	To      string            `yaml:"to" doc:"output subject; ${! expr } parts are computed per event"`
	Start   string            `yaml:"start" doc:"all (default: from the first stored event) or new"`
	Bounded bool              `yaml:"bounded" doc:"declares that a cycle through this node terminates"`
}

// View is one materialized view of the graph.
type View struct {
	Name     string     `yaml:"name"`
	From     Strings    `yaml:"from"`
	Where    string     `yaml:"where"`
	Key      OrderedMap `yaml:"key" doc:"field: Bloblang expression, one or more"`
	Window   Duration   `yaml:"window" doc:"tumbling window by event time, e.g. 1h; 0 for none"`
	Lateness Duration   `yaml:"lateness" doc:"how late an event may arrive for its window"`
	Keep     Duration   `yaml:"keep" doc:"windowed rows older than this are deleted; 0 keeps them"`
	Measures OrderedMap `yaml:"measures" doc:"name: count | sum(expr) | min(expr) | max(expr) | avg(expr) | last(expr) | uniq(expr) | latest | latest(mapping)"`
	Start    string     `yaml:"start"`
	Bounded  bool       `yaml:"bounded"`
}

// Aggregate declares an event-sourced aggregate type for CQRS.
type Aggregate struct {
	Type     string    `yaml:"type" doc:"aggregate type; events are stored on agg.<type>.<id>"`
	State    string    `yaml:"state" doc:"Bloblang reducer over this.state and this.event; default merges event data"`
	Commands []Command `yaml:"commands"`
}

// Command is a named command on an aggregate type.
type Command struct {
	Name  string `yaml:"name"`
	Check string `yaml:"check" doc:"Bloblang over this.state, this.command, this.id, this.version: true, false or throw(\"message\")"`
	Emit  string `yaml:"emit" doc:"Bloblang mapping to {type, data} or a list of them"`
}

// NodeDecoder is implemented by config types that read a whole YAML node.
type NodeDecoder interface {
	DecodeNode(n *yaml.Node) error
}

// Strings is one string or a list of strings; from the environment or a
// flag, a comma-separated list.
type Strings []string

func (s *Strings) Set(v string) error {
	var out Strings
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	*s = out
	return nil
}

func (s *Strings) DecodeNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = Strings{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(Strings, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("want a list of strings")
			}
			out = append(out, c.Value)
		}
		*s = out
		return nil
	}
	return fmt.Errorf("want a string or a list of strings")
}

// Pair is one entry of an OrderedMap.
type Pair struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// OrderedMap is a YAML mapping of names to strings that keeps its order (key
// fields and measures are columns, in the order written). A single string is
// one entry named "key".
type OrderedMap []Pair

func (m *OrderedMap) DecodeNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*m = OrderedMap{{Name: "key", Value: n.Value}}
		return nil
	case yaml.MappingNode:
		out := OrderedMap{}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: %s: want a string", v.Line, k.Value)
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: %s: duplicate", k.Line, k.Value)
			}
			seen[k.Value] = true
			out = append(out, Pair{Name: k.Value, Value: v.Value})
		}
		*m = out
		return nil
	}
	return fmt.Errorf("want a mapping of name: expression")
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// validateGraph checks what can be checked without compiling Bloblang.
func (c *Config) validateGraph(add func(path, format string, a ...any)) {
	names := map[string]string{}
	checkName := func(path, name string) {
		if !nameRE.MatchString(name) {
			add(path+".name", "want lower-case letters, digits and _, starting with a letter, got %q", name)
			return
		}
		if prev, dup := names[name]; dup {
			add(path+".name", "%q is already used by %s", name, prev)
		}
		names[name] = path
	}
	checkStart := func(path, s string) {
		if s != "" && s != "all" && s != "new" {
			add(path+".start", "want all or new, got %q", s)
		}
	}
	for i, p := range c.Processors {
		path := fmt.Sprintf("processors[%d]", i)
		checkName(path, p.Name)
		if len(p.From) == 0 {
			add(path+".from", "required: the subjects to consume")
		}
		if p.Map != "" && p.Use != "" {
			add(path+".use", "set map or use, not both")
		}
		if len(p.With) > 0 && p.Use == "" {
			add(path+".with", "options for an enricher: set use too")
		}
		if p.To == "" {
			add(path+".to", "required: the output subject")
		}
		checkStart(path, p.Start)
	}
	types := map[string]bool{}
	for i, a := range c.Aggregates {
		path := fmt.Sprintf("aggregates[%d]", i)
		if !nameRE.MatchString(a.Type) {
			add(path+".type", "want lower-case letters, digits and _, starting with a letter, got %q", a.Type)
		}
		if types[a.Type] {
			add(path+".type", "%q is declared twice", a.Type)
		}
		types[a.Type] = true
		cmds := map[string]bool{}
		for j, cmd := range a.Commands {
			cp := fmt.Sprintf("%s.commands[%d]", path, j)
			if !nameRE.MatchString(cmd.Name) {
				add(cp+".name", "want lower-case letters, digits and _, got %q", cmd.Name)
			}
			if cmds[cmd.Name] {
				add(cp+".name", "%q is declared twice", cmd.Name)
			}
			cmds[cmd.Name] = true
			if cmd.Emit == "" {
				add(cp+".emit", "required: the events the command produces")
			}
		}
	}
	for i, v := range c.Views {
		path := fmt.Sprintf("views[%d]", i)
		checkName(path, v.Name)
		if len(v.From) == 0 {
			add(path+".from", "required: the subjects to consume")
		}
		if len(v.Key) == 0 {
			add(path+".key", "required: one or more key expressions")
		}
		if len(v.Measures) == 0 {
			add(path+".measures", "required: one or more measures")
		}
		for _, k := range v.Key {
			if !nameRE.MatchString(k.Name) {
				add(path+".key."+k.Name, "key field names are lower-case letters, digits and _")
			}
		}
		for _, m := range v.Measures {
			if !nameRE.MatchString(m.Name) {
				add(path+".measures."+m.Name, "measure names are lower-case letters, digits and _")
			}
		}
		if v.Window == 0 && (v.Keep != 0 || v.Lateness != 0) {
			add(path+".window", "keep and lateness need a window")
		}
		checkStart(path, v.Start)
	}
}
