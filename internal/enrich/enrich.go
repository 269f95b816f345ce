package enrich

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Enricher adds derived fields to an event object in place.
type Enricher interface {
	Enrich(obj map[string]any) error
}

// Options are an enricher's `with:` settings from ops.yaml.
type Options map[string]string

var (
	// ErrUnknownEnricher is returned by New for a name not in Names.
	ErrUnknownEnricher = errors.New("unknown enricher")
	// ErrInvalidOption matches every *OptionError.
	ErrInvalidOption = errors.New("invalid option")
	// ErrInvalidField matches every *FieldError.
	ErrInvalidField = errors.New("invalid field")
)

// OptionError is a bad `with:` setting. Option is the key under `with`, so
// config validation can report the full path (processors[2].with.timeout).
type OptionError struct {
	Option  string
	Problem string
}

func (e *OptionError) Error() string        { return "with." + e.Option + ": " + e.Problem }
func (e *OptionError) Is(target error) bool { return target == ErrInvalidOption }

// FieldError is an event field that is present but unusable, returned by
// Enrich. The processor dead-letters the event with it rather than publish
// an event that silently lacks the enrichment.
type FieldError struct {
	Field   string // dot path inside the event object
	Problem string
}

func (e *FieldError) Error() string        { return e.Field + ": " + e.Problem }
func (e *FieldError) Is(target error) bool { return target == ErrInvalidField }

// spec declares an enricher: every option it accepts with its default, and
// how to build it from complete options. New checks keys against defaults
// before build runs, so build only validates values.
type spec struct {
	defaults Options
	build    func(o Options) (Enricher, error)
}

var registry = map[string]spec{
	"useragent": {
		defaults: Options{"field": "data.context.userAgent", "into": "data.context.ua"},
		build:    buildUserAgent,
	},
	"referrer": {
		defaults: Options{"field": "data.context.page.referrer", "url_field": "data.context.page.url", "into": "data.context.referrer_info"},
		build:    buildReferrer,
	},
	"utm": {
		defaults: Options{"url_field": "data.context.page.url", "into": "data.context"},
		build:    buildUTM,
	},
	"anonymize_ip": {
		defaults: Options{"field": "data.context.ip", "mode": "truncate"},
		build:    buildAnonymizeIP,
	},
	"session": {
		defaults: Options{"timeout": "30m", "into": "data.context.session"},
		build:    buildSession,
	},
}

// New returns the named enricher configured with opts. Unknown names and
// unknown or invalid option keys are errors that name the option
// (for example `with.timeout: want a duration, got "soon"`).
func New(name string, opts Options) (Enricher, error) {
	s, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("use: %w %q (want one of %s)", ErrUnknownEnricher, name, strings.Join(Names(), ", "))
	}
	// Sorted so that a config with several bad keys always reports the same one.
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if _, ok := s.defaults[k]; !ok {
			return nil, &OptionError{Option: k, Problem: fmt.Sprintf("unknown option for %s (want one of %s)",
				name, strings.Join(slices.Sorted(maps.Keys(s.defaults)), ", "))}
		}
	}
	full := maps.Clone(s.defaults)
	maps.Copy(full, opts)
	return s.build(full)
}

// Names lists the built-in enrichers, sorted.
func Names() []string {
	return slices.Sorted(maps.Keys(registry))
}

// Defaults returns the options the named enricher accepts with their
// defaults, for docs and `ops check-config`; nil for an unknown name.
func Defaults(name string) Options {
	s, ok := registry[name]
	if !ok {
		return nil
	}
	return maps.Clone(s.defaults)
}

func optPath(o Options, key string) (path, error) {
	p, err := parsePath(o[key])
	if err != nil {
		return nil, &OptionError{Option: key, Problem: err.Error()}
	}
	return p, nil
}

func optDuration(o Options, key string) (time.Duration, error) {
	d, err := time.ParseDuration(o[key])
	if err != nil {
		return 0, &OptionError{Option: key, Problem: fmt.Sprintf("want a duration, got %q", o[key])}
	}
	if d <= 0 {
		return 0, &OptionError{Option: key, Problem: fmt.Sprintf("want a positive duration, got %q", o[key])}
	}
	return d, nil
}

func optOneOf(o Options, key string, choices ...string) (string, error) {
	if slices.Contains(choices, o[key]) {
		return o[key], nil
	}
	return "", &OptionError{Option: key, Problem: fmt.Sprintf("want one of %s, got %q", strings.Join(choices, ", "), o[key])}
}
