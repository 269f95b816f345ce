package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// SpecVersion is the only CloudEvents version Ops accepts.
const SpecVersion = "1.0"

// DefaultMaxBytes is the default limit on one encoded event.
const DefaultMaxBytes = 64 << 10

// Content types of the CloudEvents JSON format.
const (
	ContentType      = "application/cloudevents+json"
	BatchContentType = "application/cloudevents-batch+json"
)

// SubjectPrefix is the first token of every event subject on the bus.
const SubjectPrefix = "ev"

// maxSubjectLen keeps subjects well inside what NATS handles comfortably.
const maxSubjectLen = 255

// Event is a CloudEvents 1.0 event. Extensions keep any attribute that is not
// a known context attribute (userid, anonymousid, sessionid, traceparent, ...).
type Event struct {
	SpecVersion     string
	ID              string
	Source          string
	Type            string
	Subject         string // the CloudEvents "subject" attribute, not the bus subject
	Time            time.Time
	DataContentType string
	DataSchema      string
	// Data is the raw JSON of "data"; DataBase64 is set instead for binary data.
	Data       json.RawMessage
	DataBase64 string
	Extensions map[string]any
	// compact: Data is known to be compact JSON (NewJSON), so storing it
	// skips the whitespace scan.
	compact bool
}

// Error is a validation error that names the offending field.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// ErrTooLarge is wrapped by errors about events over the size limit.
var ErrTooLarge = errors.New("event too large")

// SizeError reports an event larger than the limit.
type SizeError struct {
	Field string
	Size  int
	Limit int
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("%s: event is %d bytes, limit is %d", e.Field, e.Size, e.Limit)
}

func (e *SizeError) Unwrap() error { return ErrTooLarge }

// Event ids draw their random bits from google/uuid's pool, refilled
// from crypto/rand 256 ids at a time: the resolver and the proxy make an
// event per query and per request, and one getrandom call each was a
// tenth of that cost. An id is a name for dedup, not a secret.
func init() { uuid.EnableRandPool() }

// NewID returns a new event id: a UUIDv7, so ids sort by creation time.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system's random source fails.
		panic(fmt.Sprintf("event: generate id: %v", err))
	}
	return id.String()
}

// New returns an event with a fresh id, the current time and JSON data.
func New(source, typ string, data any) (Event, error) {
	e := Event{SpecVersion: SpecVersion, ID: NewID(), Source: source, Type: typ, Time: time.Now().UTC()}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return Event{}, fmt.Errorf("encode data: %w", err)
		}
		e.Data = b
		e.DataContentType = "application/json"
	}
	return e, nil
}

// NewJSON is New for data already encoded as compact JSON (the
// caller's to get right: it is stored as it is).
func NewJSON(source, typ string, data []byte) Event {
	return Event{SpecVersion: SpecVersion, ID: NewID(), Source: source, Type: typ, Time: time.Now().UTC(),
		Data: data, DataContentType: "application/json", compact: true}
}

// BusSubject is the NATS subject the event is stored under: "ev." followed by
// the tokens of its type. Call Validate first; BusSubject does not check.
func (e *Event) BusSubject() string {
	return SubjectPrefix + "." + e.Type
}

// Validate checks the required attributes and the subject derived from type.
// Field names in errors are the CloudEvents attribute names.
func (e *Event) Validate() error {
	switch {
	case e.SpecVersion == "":
		return &Error{"specversion", "required"}
	case e.SpecVersion != SpecVersion:
		return &Error{"specversion", fmt.Sprintf("must be %q, got %q", SpecVersion, e.SpecVersion)}
	case e.ID == "":
		return &Error{"id", "required"}
	case len(e.ID) > 256:
		return &Error{"id", "longer than 256 bytes"}
	case e.Source == "":
		return &Error{"source", "required"}
	case e.Type == "":
		return &Error{"type", "required"}
	}
	if err := ValidateTypeTokens(e.Type); err != nil {
		return &Error{"type", err.Error()}
	}
	for k := range e.Extensions {
		if !validAttrName(k) {
			return &Error{k, "extension attribute names are lower-case letters and digits, at most 20"}
		}
	}
	return nil
}

// ValidateTypeTokens checks that typ, prefixed with "ev.", is a literal NATS
// subject: dot-separated, non-empty tokens without whitespace or wildcards.
func ValidateTypeTokens(typ string) error {
	if len(SubjectPrefix)+1+len(typ) > maxSubjectLen {
		return fmt.Errorf("too long: the subject ev.<type> must be at most %d bytes", maxSubjectLen)
	}
	for i, tok := range strings.Split(typ, ".") {
		if tok == "" {
			return fmt.Errorf("empty token at position %d in %q (no leading, trailing or double dots)", i+1, typ)
		}
		if err := validToken(tok); err != nil {
			return fmt.Errorf("token %q: %w", tok, err)
		}
	}
	return nil
}

func validToken(tok string) error {
	if tok == "*" || tok == ">" {
		return errors.New("wildcards are not allowed in an event type")
	}
	for _, r := range tok {
		switch {
		case r <= ' ' || r == 0x7f:
			return errors.New("whitespace and control characters are not allowed")
		case r == '*' || r == '>':
			return errors.New("'*' and '>' are not allowed")
		case r > 0x7e:
			return errors.New("only printable ASCII is allowed")
		}
	}
	return nil
}

// ValidateFilter checks a subject filter such as "ev.track.>" for the
// read and tail APIs: non-empty tokens, '*' whole tokens, '>' last.
func ValidateFilter(f string) error {
	if f == "" {
		return errors.New("empty subject")
	}
	toks := strings.Split(f, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return fmt.Errorf("empty token at position %d", i+1)
		case tok == ">":
			if i != len(toks)-1 {
				return errors.New("'>' must be the last token")
			}
		case tok == "*":
		default:
			if err := validToken(tok); err != nil {
				return fmt.Errorf("token %q: %w", tok, err)
			}
		}
	}
	return nil
}

func validAttrName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Normalize fills optional attributes Ops relies on: time defaults to now.
func (e *Event) Normalize(now time.Time) {
	if e.Time.IsZero() {
		e.Time = now.UTC()
	}
}

// UnmarshalJSON decodes a structured-mode CloudEvent. Attribute type errors
// name the attribute.
func (e *Event) UnmarshalJSON(b []byte) error {
	*e = Event{}
	err := scanObject(b, func(k string, v []byte) error {
		str := func(dst *string) error {
			if v[0] == 'n' { // null: the attribute is absent
				return nil
			}
			s, err := unquote(v)
			if err != nil {
				return &Error{k, "must be a string"}
			}
			*dst = s
			return nil
		}
		switch k {
		case "specversion":
			return str(&e.SpecVersion)
		case "id":
			return str(&e.ID)
		case "source":
			return str(&e.Source)
		case "type":
			return str(&e.Type)
		case "subject":
			return str(&e.Subject)
		case "datacontenttype":
			return str(&e.DataContentType)
		case "dataschema":
			return str(&e.DataSchema)
		case "data_base64":
			return str(&e.DataBase64)
		case "time":
			var ts string
			if err := str(&ts); err != nil {
				return &Error{"time", "must be an RFC 3339 string"}
			}
			if ts == "" {
				e.Time = time.Time{}
				return nil
			}
			t, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				return &Error{"time", fmt.Sprintf("must be RFC 3339, got %q", ts)}
			}
			e.Time = t
		case "data":
			if (v[0] == '{' || v[0] == '[') && !json.Valid(v) {
				return &Error{"data", "invalid JSON"}
			}
			e.Data = append(json.RawMessage(nil), v...)
		default:
			x, err := parseExtension(v)
			if err != nil {
				return &Error{k, "extension attributes must be a string, number or boolean"}
			}
			if e.Extensions == nil {
				e.Extensions = make(map[string]any)
			}
			e.Extensions[k] = x
		}
		return nil
	})
	if err != nil {
		if _, ok := err.(*Error); ok {
			return err
		}
		return &Error{"", "malformed JSON: " + err.Error()}
	}
	if e.DataBase64 != "" && e.Data != nil {
		return &Error{"data", "data and data_base64 are mutually exclusive"}
	}
	return nil
}

// MarshalJSON encodes the event in structured mode with a stable key order.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 256+len(e.Data)))
}

// AppendJSON appends the structured-mode encoding of e to dst.
func (e *Event) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, '{')
	first := true
	key := func(k string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, k...)
		dst = append(dst, '"', ':')
	}
	str := func(k, v string) {
		if v == "" {
			return
		}
		key(k)
		dst = appendString(dst, v)
	}
	str("specversion", e.SpecVersion)
	str("id", e.ID)
	str("source", e.Source)
	str("type", e.Type)
	str("subject", e.Subject)
	if !e.Time.IsZero() {
		key("time")
		dst = append(dst, '"')
		dst = e.Time.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	str("datacontenttype", e.DataContentType)
	str("dataschema", e.DataSchema)
	if len(e.Extensions) > 0 {
		keys := make([]string, 0, len(e.Extensions))
		for k := range e.Extensions {
			keys = append(keys, k)
		}
		sortStrings(keys)
		for _, k := range keys {
			v, err := json.Marshal(e.Extensions[k])
			if err != nil {
				return nil, fmt.Errorf("extension %q: %w", k, err)
			}
			key(k)
			dst = append(dst, v...)
		}
	}
	if len(e.Data) > 0 {
		key("data")
		var err error
		if e.compact {
			dst = append(dst, e.Data...)
		} else if dst, err = appendCompact(dst, ValidUTF8(e.Data)); err != nil {
			return nil, &Error{"data", "invalid JSON"}
		}
	} else if e.DataBase64 != "" {
		str("data_base64", e.DataBase64)
	}
	return append(dst, '}'), nil
}

// appendCompact appends JSON v without insignificant space; already compact
// input (the common case) is copied as is.
func appendCompact(dst, v []byte) ([]byte, error) {
	compact := true
	inStr := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if inStr {
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		if c == '"' {
			inStr = true
		} else if isSpace(c) {
			compact = false
			break
		}
	}
	if compact {
		return append(dst, v...), nil
	}
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
