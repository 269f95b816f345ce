package collector

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/opsgraph/ops/internal/event"
)

// Types are the Segment spec's message types.
var Types = map[string]bool{"track": true, "identify": true, "page": true, "screen": true, "group": true, "alias": true}

// FieldError is a problem with one message field; Index is the message's
// place in a batch (-1 outside one).
type FieldError struct {
	Index int
	Field string
	Msg   string
	Limit bool // an over-the-limit error (413)
}

func (e *FieldError) Path() string {
	if e.Index < 0 {
		if e.Field == "" {
			return "body"
		}
		return e.Field
	}
	if e.Field == "" {
		return fmt.Sprintf("batch[%d]", e.Index)
	}
	return fmt.Sprintf("batch[%d].%s", e.Index, e.Field)
}

func (e *FieldError) Error() string { return e.Path() + ": " + e.Msg }

// normalizer turns Segment messages into CloudEvents.
type normalizer struct {
	receivedAt   time.Time
	sentAt       time.Time // the batch's, zero if absent
	context      map[string]any
	integrations map[string]any
	maxBytes     int
}

func parseTime(v any) (time.Time, bool) {
	s, ok := v.(string)
	if !ok || s == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func str(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, x != ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// normalize validates one message, fills what Segment fills (messageId,
// receivedAt, a corrected timestamp, batch context) and returns its event.
// typ is the endpoint's type, or "" for a batch item (which names its own).
func (n *normalizer) normalize(raw []byte, typ string, idx int) (event.Event, error) {
	fail := func(field, format string, a ...any) error {
		return &FieldError{Index: idx, Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	if len(raw) > n.maxBytes {
		return event.Event{}, &FieldError{Index: idx, Msg: fmt.Sprintf("message is %d bytes, over the limit of %d (collector.max_event_bytes)", len(raw), n.maxBytes), Limit: true}
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return event.Event{}, fail("", "a message must be a JSON object")
		}
		return event.Event{}, fail("", "malformed JSON: %v", err)
	}
	if t, ok := m["type"].(string); ok && t != "" {
		if typ != "" && t != typ {
			return event.Event{}, fail("type", "is %q but the endpoint is /v1/%s", t, typ)
		}
		typ = t
	}
	if typ == "" {
		return event.Event{}, fail("type", "required in a batch: one of track, identify, page, screen, group, alias")
	}
	if !Types[typ] {
		return event.Event{}, fail("type", "unknown type %q: want track, identify, page, screen, group or alias", typ)
	}
	m["type"] = typ
	uid, hasUID := str(m["userId"])
	aid, hasAID := str(m["anonymousId"])
	if !hasUID && !hasAID {
		return event.Event{}, fail("userId", "userId or anonymousId is required")
	}
	var subject string
	switch typ {
	case "track":
		name, ok := m["event"].(string)
		if !ok || name == "" {
			return event.Event{}, fail("event", "required for track: the event's name")
		}
		subject = name
	case "page", "screen":
		subject, _ = m["name"].(string)
	case "group":
		if _, ok := str(m["groupId"]); !ok {
			return event.Event{}, fail("groupId", "required for group")
		}
	case "alias":
		if _, ok := str(m["previousId"]); !ok {
			return event.Event{}, fail("previousId", "required for alias")
		}
		if !hasUID {
			return event.Event{}, fail("userId", "required for alias")
		}
	}
	id, _ := m["messageId"].(string)
	if id == "" {
		id = event.NewID()
		m["messageId"] = id
	} else if len(id) > 256 {
		return event.Event{}, fail("messageId", "longer than 256 characters")
	}
	// Time, as Segment and RudderStack compute it: the client's clock is
	// corrected by how far its sentAt is from our receivedAt.
	m["receivedAt"] = n.receivedAt.Format(time.RFC3339Nano)
	ts, hasTS := parseTime(m["timestamp"])
	if _, present := m["timestamp"]; present && !hasTS {
		return event.Event{}, fail("timestamp", "want an ISO 8601 time, got %v", m["timestamp"])
	}
	if !hasTS {
		orig, hasOrig := parseTime(m["originalTimestamp"])
		sent, hasSent := parseTime(m["sentAt"])
		if !hasSent && !n.sentAt.IsZero() {
			sent, hasSent = n.sentAt, true
		}
		switch {
		case hasOrig && hasSent:
			ts = n.receivedAt.Add(-sent.Sub(orig))
		case hasOrig:
			ts = orig
		default:
			ts = n.receivedAt
		}
		m["timestamp"] = ts.Format(time.RFC3339Nano)
	}
	if !n.sentAt.IsZero() {
		if _, ok := m["sentAt"]; !ok {
			m["sentAt"] = n.sentAt.Format(time.RFC3339Nano)
		}
	}
	m["context"] = mergeMaps(n.context, m["context"])
	if n.integrations != nil {
		m["integrations"] = mergeMaps(n.integrations, m["integrations"])
	}
	delete(m, "writeKey")
	data, err := json.Marshal(m)
	if err != nil {
		return event.Event{}, fail("", "%v", err)
	}
	e := event.Event{
		SpecVersion: event.SpecVersion, ID: id, Source: "/collector", Type: "track." + typ,
		Subject: subject, Time: ts, DataContentType: "application/json", Data: data,
	}
	if hasUID || hasAID {
		e.Extensions = map[string]any{}
		if hasUID {
			e.Extensions["userid"] = uid
		}
		if hasAID {
			e.Extensions["anonymousid"] = aid
		}
	}
	return e, nil
}

// mergeMaps is base with over's keys on top; over wins. Non-objects in
// over replace base.
func mergeMaps(base map[string]any, over any) any {
	o, ok := over.(map[string]any)
	if over != nil && !ok {
		return over
	}
	if len(base) == 0 {
		if o == nil {
			return map[string]any{}
		}
		return o
	}
	out := make(map[string]any, len(base)+len(o))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range o {
		out[k] = v
	}
	return out
}
