// Package logging builds the log/slog loggers of Ops: one per module, each
// with its own level that can be changed while the process runs.
//
// Invariant: every logger carries a "module" attribute; nothing logs through
// a global logger except main.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// Levels hands out per-module loggers and holds their levels.
type Levels struct {
	mu     sync.Mutex
	w      io.Writer
	json   bool
	base   slog.Level
	levels map[string]*slog.LevelVar
}

// ParseLevel reads debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("unknown level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// New returns the level registry; base is the level of modules not listed
// in modules.
func New(w io.Writer, format, base string, modules map[string]string) (*Levels, error) {
	bl, err := ParseLevel(base)
	if err != nil {
		return nil, err
	}
	l := &Levels{w: &lockedWriter{w: w}, json: format == "json", base: bl, levels: map[string]*slog.LevelVar{}}
	for m, s := range modules {
		if err := l.Set(m, s); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Logger returns the logger of a module.
func (l *Levels) Logger(module string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.levelVar(module)}
	var h slog.Handler
	if l.json {
		h = slog.NewJSONHandler(l.w, opts)
	} else {
		h = slog.NewTextHandler(l.w, opts)
	}
	return slog.New(h).With("module", module)
}

func (l *Levels) levelVar(module string) *slog.LevelVar {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.levels[module]
	if !ok {
		v = new(slog.LevelVar)
		v.Set(l.base)
		l.levels[module] = v
	}
	return v
}

// Set changes a module's level at once, for loggers already handed out too.
func (l *Levels) Set(module, level string) error {
	lv, err := ParseLevel(level)
	if err != nil {
		return err
	}
	l.levelVar(module).Set(lv)
	return nil
}

// ErrUnknownModule is Update for a module that has no logger.
var ErrUnknownModule = fmt.Errorf("unknown module")

// Update changes the level of a module that has a logger (at run time,
// where a typo must not quietly add a module nobody logs as).
func (l *Levels) Update(module, level string) error {
	lv, err := ParseLevel(level)
	if err != nil {
		return err
	}
	l.mu.Lock()
	v, ok := l.levels[module]
	var known []string
	if !ok {
		for m := range l.levels {
			known = append(known, m)
		}
	}
	l.mu.Unlock()
	if !ok {
		sort.Strings(known)
		return fmt.Errorf("%w %q: known modules are %s", ErrUnknownModule, module, strings.Join(known, ", "))
	}
	v.Set(lv)
	return nil
}

// All returns each known module and its level, sorted by module.
func (l *Levels) All() []ModuleLevel {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]ModuleLevel, 0, len(l.levels))
	for m, v := range l.levels {
		out = append(out, ModuleLevel{Module: m, Level: strings.ToLower(v.Level().String())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Module < out[j].Module })
	return out
}

// ModuleLevel is one row of All.
type ModuleLevel struct {
	Module string `json:"module"`
	Level  string `json:"level"`
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
