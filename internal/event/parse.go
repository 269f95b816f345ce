package event

import (
	"bytes"
	"encoding/json"
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
	if err := json.Unmarshal(b, &e); err != nil {
		if _, ok := err.(*Error); !ok {
			err = &Error{"", "malformed JSON: " + jsonMsg(err)}
		}
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
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, &Error{"", "malformed JSON: " + jsonMsg(err)}
	}
	if len(raws) == 0 {
		return nil, &Error{"events", "empty batch"}
	}
	out := make([]Event, len(raws))
	for i, r := range raws {
		e, err := parseOne(r, maxBytes, now, fmt.Sprintf("events[%d]", i))
		if err != nil {
			return nil, err
		}
		out[i] = e
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
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range evs {
		if i > 0 {
			b.WriteByte(',')
		}
		j, err := evs[i].MarshalJSON()
		if err != nil {
			return nil, err
		}
		b.Write(j)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// Decode reads a stored bus message body: a single event (structured mode) or
// a batch (a JSON array). Stored messages were validated when written, so this
// does not validate again.
func Decode(body []byte) ([]Event, error) {
	t := bytes.TrimSpace(body)
	if len(t) > 0 && t[0] == '[' {
		var evs []Event
		if err := json.Unmarshal(t, &evs); err != nil {
			return nil, err
		}
		return evs, nil
	}
	var e Event
	if err := json.Unmarshal(t, &e); err != nil {
		return nil, err
	}
	return []Event{e}, nil
}
