package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem with one key. Line is 0 when the value did not
// come from the file (defaults, environment, flags).
type FieldError struct {
	Path   string
	Line   int
	Source string // "file", "env OPS_X", "flag"; empty for validation
	Msg    string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Source != "" && e.Line == 0 {
		b.WriteString(e.Source + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found while loading, in file order.
type Errors []*FieldError

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Err returns nil for an empty list, so callers can return it as an error.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Options says where the layers above the defaults come from.
type Options struct {
	File string   // path of ops.yaml; empty for none
	Env  []string // os.Environ() style; only OPS_ names are read
	Set  []string // "path=value" overrides from flags, applied last
}

// clientEnv are OPS_ variables read by CLI client commands, not the server.
var clientEnv = map[string]bool{"OPS_SERVER": true, "OPS_TOKEN": true, "OPS_CONFIG": true}

// Load builds the effective config and validates it.
func Load(o Options) (*Config, error) {
	c := Default()
	var errs Errors
	if o.File != "" {
		b, err := os.ReadFile(o.File)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		errs = append(errs, decodeYAML(b, &c)...)
	}
	errs = append(errs, applyEnv(&c, o.Env)...)
	for _, kv := range o.Set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			errs = append(errs, &FieldError{Source: "flag", Msg: fmt.Sprintf("--set wants path=value, got %q", kv)})
			continue
		}
		if err := SetPath(&c, k, v); err != nil {
			errs = append(errs, &FieldError{Path: k, Source: "flag", Msg: err.Error()})
		}
	}
	if len(errs) == 0 {
		errs = c.Validate()
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &c, nil
}

// Parse decodes a YAML document over the defaults and validates it.
func Parse(b []byte) (*Config, error) {
	c := Default()
	if errs := decodeYAML(b, &c); len(errs) > 0 {
		return nil, errs
	}
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errs
	}
	return &c, nil
}

func decodeYAML(b []byte, c *Config) Errors {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file is the defaults
		}
		return Errors{{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return Errors{{Line: extra.Line, Msg: "more than one YAML document; ops.yaml holds one"}}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	var errs Errors
	decodeNode(doc.Content[0], reflect.ValueOf(c).Elem(), "", &errs)
	return errs
}

var (
	setterType      = reflect.TypeFor[Setter]()
	nodeDecoderType = reflect.TypeFor[NodeDecoder]()
)

func decodeNode(n *yaml.Node, v reflect.Value, path string, errs *Errors) {
	fail := func(format string, a ...any) {
		*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, a...)})
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "key:" with no value keeps the default
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		if err := v.Addr().Interface().(NodeDecoder).DecodeNode(n); err != nil {
			fail("%v", err)
		}
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(setterType) {
		if n.Kind != yaml.ScalarNode {
			fail("want a single value, got a %s", kindName(n.Kind))
			return
		}
		if err := v.Addr().Interface().(Setter).Set(n.Value); err != nil {
			fail("%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			fail("want a mapping of keys, got a %s", kindName(n.Kind))
			return
		}
		fields := yamlFields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if seen[k.Value] {
				*errs = append(*errs, &FieldError{Path: p, Line: k.Line, Msg: "duplicate key"})
				continue
			}
			seen[k.Value] = true
			idx, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, &FieldError{Path: p, Line: k.Line, Msg: "unknown key" + suggest(k.Value, fields)})
				continue
			}
			decodeNode(val, v.Field(idx), p, errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			fail("want a mapping, got a %s", kindName(n.Kind))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ev := reflect.New(v.Type().Elem()).Elem()
			decodeNode(val, ev, join(path, k.Value), errs)
			v.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			fail("want a list, got a %s", kindName(n.Kind))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			decodeNode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), errs)
		}
		v.Set(s)
	default:
		if n.Kind != yaml.ScalarNode {
			fail("want a single value, got a %s", kindName(n.Kind))
			return
		}
		if err := setScalar(v, n.Value); err != nil {
			fail("%v", err)
		}
	}
}

func setScalar(v reflect.Value, s string) error {
	if v.CanAddr() && v.Addr().Type().Implements(setterType) {
		return v.Addr().Interface().(Setter).Set(s)
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("cannot be set from a single value")
	}
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	}
	return "document"
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

func yamlName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" || !f.IsExported() {
		return ""
	}
	return tag
}

// suggest names the closest known key, for typos like "listn".
func suggest(k string, fields map[string]int) string {
	best, bestD := "", 3
	for name := range fields {
		if d := editDistance(k, name); d < bestD {
			best, bestD = name, d
		}
	}
	if best == "" {
		keys := make([]string, 0, len(fields))
		for name := range fields {
			keys = append(keys, name)
		}
		sort.Strings(keys)
		return " (known keys: " + strings.Join(keys, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Leaf is one settable key: its path, environment name and current value.
type Leaf struct {
	Path  string
	Env   string
	Value reflect.Value
	Field reflect.StructField
}

// Leaves lists every scalar key of c, in declaration order. Map-valued keys
// (log.modules) are listed by their path; they are set from the file only.
func Leaves(c *Config) []Leaf {
	var out []Leaf
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			p := join(path, name)
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct && !fv.Addr().Type().Implements(setterType) {
				walk(fv, p)
				continue
			}
			out = append(out, Leaf{Path: p, Env: EnvName(p), Value: fv, Field: f})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

// EnvName is the environment variable that overrides a key path.
func EnvName(path string) string {
	return "OPS_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

func applyEnv(c *Config, env []string) Errors {
	byEnv := map[string]Leaf{}
	for _, l := range Leaves(c) {
		byEnv[l.Env] = l
	}
	var errs Errors
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "OPS_") || clientEnv[k] {
			continue
		}
		l, ok := byEnv[k]
		if !ok || fileOnly(l.Value) {
			msg := "not a known setting"
			if ok {
				msg = "is a mapping or list; set it in the config file"
			} else {
				names := map[string]int{}
				for e := range byEnv {
					names[e] = 0
				}
				for c := range clientEnv {
					names[c] = 0
				}
				msg += closest(k, names)
			}
			errs = append(errs, &FieldError{Source: "env " + k, Msg: msg})
			continue
		}
		if err := setScalar(l.Value, v); err != nil {
			errs = append(errs, &FieldError{Path: l.Path, Source: "env " + k, Msg: err.Error()})
		}
	}
	return errs
}

// SetPath sets one scalar key by its dotted path, as --set does.
func SetPath(c *Config, path, value string) error {
	for _, l := range Leaves(c) {
		if l.Path == path {
			if fileOnly(l.Value) {
				return fmt.Errorf("is a mapping or list; set it in the config file")
			}
			return setScalar(l.Value, value)
		}
	}
	if m, key, ok := strings.Cut(path, "log.modules."); ok && m == "" {
		if c.Log.Modules == nil {
			c.Log.Modules = map[string]string{}
		}
		c.Log.Modules[key] = value
		return nil
	}
	paths := map[string]int{}
	for _, l := range Leaves(c) {
		paths[l.Path] = 0
	}
	return fmt.Errorf("unknown key%s", closest(path, paths))
}

// closest names the nearest known name for a typo, or nothing when none
// is near (the full lists of keys and variables are long: docs/config.md
// has them).
func closest(k string, names map[string]int) string {
	best, bestD := "", max(3, len(k)/5)
	for name := range names {
		if d := editDistance(k, name); d < bestD {
			best, bestD = name, d
		}
	}
	if best == "" {
		return " (docs/config.md lists every key)"
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// fileOnly reports whether a key can be set only in the file (mappings and
// lists have no single-string form).
func fileOnly(v reflect.Value) bool {
	if v.CanAddr() && v.Addr().Type().Implements(setterType) {
		return false
	}
	return v.Kind() == reflect.Map || v.Kind() == reflect.Slice
}

// DecodeYAML decodes one YAML (or JSON) document into v, a pointer to a
// config type such as Processor, strictly: unknown keys and bad values are
// errors naming the key path (prefixed with path) and line.
func DecodeYAML(b []byte, v any, path string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return Errors{{Msg: "invalid YAML or JSON: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if len(doc.Content) == 0 {
		return Errors{{Path: path, Msg: "empty body"}}
	}
	var errs Errors
	decodeNode(doc.Content[0], reflect.ValueOf(v).Elem(), path, &errs)
	return errs.Err()
}
