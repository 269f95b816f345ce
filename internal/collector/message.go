package collector

import (
	"encoding/json"
	"fmt"
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
	// visitor derives an anonymousId for messages with no id (browser
	// requests); nil elsewhere.
	visitor   func() (string, error)
	visitorID string
	// geo adds context.location.country to a message's merged context;
	// nil without a geo database.
	geo func(ctx []byte) []byte
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

// overridden are keys normalize writes itself; the rest of a message is
// copied through byte for byte.
var overridden = map[string]bool{"type": true, "messageId": true, "receivedAt": true, "timestamp": true,
	"sentAt": true, "context": true, "integrations": true, "writeKey": true}

// normalize validates one message, fills what Segment fills (messageId,
// receivedAt, a corrected timestamp, batch context) and returns its event.
// typ is the endpoint's type, or "" for a batch item (which names its own).
// It scans the message's top level once and copies the fields it does not
// change as they are: properties and traits are never decoded.
func (n *normalizer) normalize(raw []byte, typ string, idx int) (event.Event, error) {
	fail := func(field, format string, a ...any) error {
		return &FieldError{Index: idx, Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	if len(raw) > n.maxBytes {
		return event.Event{}, &FieldError{Index: idx, Msg: fmt.Sprintf("message is %d bytes, over the limit of %d (collector.max_event_bytes)", len(raw), n.maxBytes), Limit: true}
	}
	if !json.Valid(raw) {
		var x any
		return event.Event{}, fail("", "malformed JSON: %v", json.Unmarshal(raw, &x))
	}
	type kv struct {
		k string
		v []byte
	}
	var keep []kv
	vals := map[string][]byte{}
	err := event.ScanObject(raw, func(k string, v []byte) error {
		if overridden[k] || k == "userId" || k == "anonymousId" || k == "event" || k == "name" ||
			k == "groupId" || k == "previousId" || k == "originalTimestamp" {
			vals[k] = v
		}
		if !overridden[k] {
			keep = append(keep, kv{k, v})
		}
		return nil
	})
	if err != nil {
		return event.Event{}, fail("", "a message must be a JSON object")
	}
	sval := func(k string) (string, bool) {
		v, ok := vals[k]
		if !ok {
			return "", false
		}
		switch {
		case len(v) > 0 && v[0] == '"':
			s, err := event.Unquote(v)
			return s, err == nil && s != ""
		case len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9'):
			return string(v), true // numeric ids, as Segment allows
		}
		return "", false
	}
	if t, ok := sval("type"); ok {
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
	uid, hasUID := sval("userId")
	aid, hasAID := sval("anonymousId")
	derived := false
	if !hasAID && n.visitor != nil {
		if n.visitorID == "" {
			v, err := n.visitor()
			if err != nil {
				return event.Event{}, fail("anonymousId", "cannot derive a visitor id: %v", err)
			}
			n.visitorID = v
		}
		aid, hasAID, derived = n.visitorID, true, true
	}
	if !hasUID && !hasAID {
		return event.Event{}, fail("userId", "userId or anonymousId is required")
	}
	var subject string
	switch typ {
	case "track":
		name, ok := sval("event")
		if !ok || vals["event"][0] != '"' {
			return event.Event{}, fail("event", "required for track: the event's name")
		}
		subject = name
	case "page", "screen":
		subject, _ = sval("name")
	case "group":
		if _, ok := sval("groupId"); !ok {
			return event.Event{}, fail("groupId", "required for group")
		}
	case "alias":
		if _, ok := sval("previousId"); !ok {
			return event.Event{}, fail("previousId", "required for alias")
		}
		if !hasUID {
			return event.Event{}, fail("userId", "required for alias")
		}
	}
	id, _ := sval("messageId")
	if id == "" {
		id = event.NewID()
	} else if len(id) > 256 {
		return event.Event{}, fail("messageId", "longer than 256 characters")
	}
	// Time, as Segment and RudderStack compute it: the client's clock is
	// corrected by how far its sentAt is from our receivedAt.
	tsRaw, hasTSKey := vals["timestamp"]
	var ts time.Time
	if hasTSKey {
		s, _ := sval("timestamp")
		t, ok := parseTime(s)
		if !ok {
			return event.Event{}, fail("timestamp", "want an ISO 8601 time, got %s", tsRaw)
		}
		ts = t
	} else {
		o, _ := sval("originalTimestamp")
		orig, hasOrig := parseTime(o)
		st, _ := sval("sentAt")
		sent, hasSent := parseTime(st)
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
	}

	out := make([]byte, 0, len(raw)+256)
	out = append(out, '{')
	for _, p := range keep {
		out = event.AppendString(out, p.k)
		out = append(out, ':')
		out = append(out, p.v...)
		out = append(out, ',')
	}
	field := func(k string, v []byte) {
		out = event.AppendString(out, k)
		out = append(out, ':')
		out = append(out, v...)
		out = append(out, ',')
	}
	strField := func(k, v string) { field(k, event.AppendString(nil, v)) }
	strField("type", typ)
	strField("messageId", id)
	if derived {
		strField("anonymousId", aid)
	}
	strField("receivedAt", n.receivedAt.Format(time.RFC3339Nano))
	if hasTSKey {
		field("timestamp", tsRaw)
	} else {
		strField("timestamp", ts.Format(time.RFC3339Nano))
	}
	if v, ok := vals["sentAt"]; ok {
		field("sentAt", v)
	} else if !n.sentAt.IsZero() {
		strField("sentAt", n.sentAt.Format(time.RFC3339Nano))
	}
	ctx, err := mergeRaw(n.context, vals["context"])
	if err != nil {
		return event.Event{}, fail("context", "%v", err)
	}
	if n.geo != nil {
		ctx = n.geo(ctx)
	}
	field("context", ctx)
	if n.integrations != nil || vals["integrations"] != nil {
		in, err := mergeRaw(n.integrations, vals["integrations"])
		if err != nil {
			return event.Event{}, fail("integrations", "%v", err)
		}
		field("integrations", in)
	}
	out[len(out)-1] = '}'
	e := event.Event{
		SpecVersion: event.SpecVersion, ID: id, Source: "/collector", Type: "track." + typ,
		Subject: subject, Time: ts, DataContentType: "application/json", Data: out,
	}
	e.Extensions = map[string]any{}
	if hasUID {
		e.Extensions["userid"] = uid
	}
	if hasAID {
		e.Extensions["anonymousid"] = aid
	}
	return e, nil
}

// mergeRaw merges a batch-level object under a message's own (raw JSON);
// without a batch-level one the message's is copied as is.
func mergeRaw(base map[string]any, own []byte) ([]byte, error) {
	if len(base) == 0 {
		if len(own) == 0 || string(own) == "null" {
			return []byte("{}"), nil
		}
		return own, nil
	}
	var o any
	if len(own) > 0 {
		if err := json.Unmarshal(own, &o); err != nil {
			return nil, err
		}
	}
	return json.Marshal(mergeMaps(base, o))
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
