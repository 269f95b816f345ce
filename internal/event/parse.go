package event

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

func sortStrings(s []string) { slices.Sort(s) }

// Parse decodes and validates one structured-mode event of at most maxBytes.
func Parse(b []byte, maxBytes int, now time.Time) (Event, error) {
	return parseOne(b, maxBytes, now, "")
}

func parseOne(b []byte, maxBytes int, now time.Time, prefix string) (Event, error) {
	if maxBytes > 0 && len(b) > maxBytes {
		return Event{}, &SizeError{Field: fieldName(prefix, "event"), Size: len(b), Limit: maxBytes}
	}
	var e Event
	if err := e.UnmarshalJSON(b); err != nil {
		return Event{}, prefixed(prefix, err)
	}
	if err := e.Validate(); err != nil {
		return Event{}, prefixed(prefix, err)
	}
	e.Normalize(now)
	return e, nil
}

// ParseBatch decodes a JSON array of structured-mode events (the CloudEvents
// batch format). Errors name the index: "events[3].type".
func ParseBatch(b []byte, maxBytes int, now time.Time) ([]Event, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '[' {
		return nil, &Error{"", "malformed JSON: a batch must be a JSON array of events"}
	}
	out := make([]Event, 0, 16)
	err := scanArray(b, func(i int, raw []byte) error {
		e, err := parseOne(raw, maxBytes, now, fmt.Sprintf("events[%d]", i))
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		switch err.(type) {
		case *Error, *SizeError:
			return nil, err
		}
		return nil, &Error{"", "malformed JSON: " + err.Error()}
	}
	if len(out) == 0 {
		return nil, &Error{"events", "empty batch"}
	}
	return out, nil
}

// ParseAny decodes one event or a batch, deciding by the first JSON byte.
func ParseAny(b []byte, maxBytes int, now time.Time) ([]Event, error) {
	t := bytes.TrimSpace(b)
	if len(t) > 0 && t[0] == '[' {
		return ParseBatch(t, maxBytes, now)
	}
	e, err := Parse(t, maxBytes, now)
	if err != nil {
		return nil, err
	}
	return []Event{e}, nil
}

func fieldName(prefix, f string) string {
	switch {
	case prefix == "":
		return f
	case f == "" || f == "event":
		return prefix
	}
	return prefix + "." + f
}

func prefixed(prefix string, err error) error {
	if prefix == "" {
		return err
	}
	switch e := err.(type) {
	case *Error:
		return &Error{Field: fieldName(prefix, e.Field), Msg: e.Msg}
	case *SizeError:
		return &SizeError{Field: fieldName(prefix, e.Field), Size: e.Size, Limit: e.Limit}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// EncodeBatch encodes events as a CloudEvents JSON batch (an array).
func EncodeBatch(evs []Event) ([]byte, error) {
	b := make([]byte, 0, 256*len(evs)+2)
	b = append(b, '[')
	for i := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = evs[i].AppendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// Decode reads a stored bus message body: a single event (structured mode) or
// a batch (a JSON array). Stored messages were validated when written, so this
// does not validate again.
func Decode(body []byte) ([]Event, error) {
	t := bytes.TrimSpace(body)
	if len(t) > 0 && t[0] == '[' {
		var evs []Event
		err := scanArray(t, func(_ int, raw []byte) error {
			var e Event
			if err := e.UnmarshalJSON(raw); err != nil {
				return err
			}
			evs = append(evs, e)
			return nil
		})
		return evs, err
	}
	var e Event
	if err := e.UnmarshalJSON(t); err != nil {
		return nil, err
	}
	return []Event{e}, nil
}
