package collector

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/geo"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/reply"
)

// Deps are what the collector needs.
type Deps struct {
	Bus    *bus.Bus
	Logger *slog.Logger
	Handle func(pattern, perm string, h http.Handler)
}

// Module serves the tracking API.
type Module struct {
	cfg     config.Collector
	deps    Deps
	keys    map[[32]byte]bool
	any     bool // CORS: any origin
	orig    map[string]bool
	salts   *salts
	out     *outreach
	api     *apiKeys
	trusted []netip.Prefix
	geo     *geo.DB // collector.geoip, or nil
}

// New mounts the tracking routes.
func New(cfg config.Collector, deps Deps) (*Module, error) {
	m := &Module{cfg: cfg, deps: deps, keys: map[[32]byte]bool{}, orig: map[string]bool{}, salts: &salts{b: deps.Bus}, api: &apiKeys{b: deps.Bus}}
	m.out = &outreach{m: m}
	m.trusted = clientip.ParsePrefixes(cfg.TrustedProxies)
	if cfg.GeoIP != "" {
		db, err := geo.Open(cfg.GeoIP)
		if err != nil {
			return nil, fmt.Errorf("collector.geoip: %w", err)
		}
		// Kept open for the process's life: handlers may still read it
		// while the module stops, and the mapping costs only page cache.
		m.geo = db
	}
	for _, k := range cfg.WriteKeys {
		m.keys[sha256.Sum256([]byte(k))] = true
	}
	for _, o := range cfg.CORSOrigins {
		if o == "*" {
			m.any = true
		}
		m.orig[strings.TrimRight(o, "/")] = true
	}
	h := deps.Handle
	for typ, short := range map[string]string{"track": "t", "identify": "i", "page": "p", "screen": "s", "group": "g", "alias": "a"} {
		handler := m.cors(m.single(typ))
		h("/v1/"+typ, identity.Public, handler)
		h("/v1/"+short, identity.Public, handler)
	}
	h("/v1/batch", identity.Public, m.cors(http.HandlerFunc(m.batch)))
	h("/v1/b", identity.Public, m.cors(http.HandlerFunc(m.batch)))
	h("/beacon/v1/batch", identity.Public, m.cors(http.HandlerFunc(m.batch)))
	h("GET /ops.js", identity.Public, http.HandlerFunc(serveJS))
	h("POST /api/v1/keys", "keys:write", http.HandlerFunc(m.api.create))
	h("GET /api/v1/keys", "keys:read", http.HandlerFunc(m.api.list))
	h("DELETE /api/v1/keys/{id}", "keys:write", http.HandlerFunc(m.api.remove))
	h("POST /api/v1/campaigns", "campaigns:write", http.HandlerFunc(m.out.create))
	h("POST /api/v1/campaigns/{id}/links", "campaigns:write", http.HandlerFunc(m.out.links))
	h("GET /c/{token}", identity.Public, http.HandlerFunc(m.out.click))
	h("GET /o/{token}", identity.Public, http.HandlerFunc(m.out.open))
	h("GET /out/{token}", identity.Public, http.HandlerFunc(m.out.outbound))
	h("GET /pixel/v1/track", identity.Public, http.HandlerFunc(m.pixel("track")))
	h("GET /pixel/v1/page", identity.Public, http.HandlerFunc(m.pixel("page")))
	h("/v1/traces", identity.Public, http.HandlerFunc(m.traces))
	h("/v1/metrics", identity.Public, http.HandlerFunc(m.metrics))
	h("/v1/logs", identity.Public, http.HandlerFunc(m.logs))
	// RudderStack's server SDKs ask how many nodes serve them before they
	// send anything; Ops answers as one node.
	h("GET /cluster-info", identity.Public, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply.JSON(w, http.StatusOK, map[string]int{"nodeCount": 1})
	}))
	return m, nil
}

// Run follows the write keys created through the API.
func (m *Module) Run(ctx context.Context, ready func()) error {
	if err := m.api.open(ctx); err != nil {
		return err
	}
	ready()
	<-ctx.Done()
	return nil
}

func (m *Module) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && (m.any || m.orig[o]) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", o)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, Content-Encoding, Anonymousid")
				h.Set("Access-Control-Max-Age", "86400")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST, OPTIONS")
			reply.Error(w, http.StatusMethodNotAllowed, "method", "use POST")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// keyOK checks a write key from Basic auth, the writeKey query parameter or
// the body's writeKey.
func (m *Module) keyOK(r *http.Request, bodyKey string) bool {
	k := bodyKey
	if u, _, ok := r.BasicAuth(); ok && u != "" {
		k = u
	} else if q := r.URL.Query().Get("writeKey"); q != "" {
		k = q
	}
	if k == "" {
		return false
	}
	h := sha256.Sum256([]byte(k))
	return m.keys[h] || m.api.valid(h)
}

// readTracking reads a tracking request's body. Any Content-Type is
// taken, as Segment's and RudderStack's gateways take it: SDKs send
// application/json, browsers' beacons text/plain, and RudderStack's Node
// SDK application/x-www-form-urlencoded (axios's default for its gzip'd
// Buffer); what counts is that the body is JSON, which parsing checks.
func readTracking(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *FieldError) {
	return readBody(w, r, limit)
}

// readBody reads a request body up to limit bytes after decompression.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *FieldError) {
	var rd io.Reader = http.MaxBytesReader(w, r.Body, limit+1)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		gz, err := gzip.NewReader(rd)
		if err != nil {
			return nil, &FieldError{Index: -1, Field: "Content-Encoding", Msg: "body is not valid gzip: " + err.Error()}
		}
		defer gz.Close()
		rd = gz
	default:
		return nil, &FieldError{Index: -1, Field: "Content-Encoding", Msg: fmt.Sprintf("unsupported encoding %q (gzip or none)", enc)}
	}
	b, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &FieldError{Index: -1, Field: "body", Msg: fmt.Sprintf("body over the limit of %d bytes", limit), Limit: true}
		}
		if r.Header.Get("Content-Encoding") == "gzip" {
			return nil, &FieldError{Index: -1, Field: "Content-Encoding", Msg: "body is not valid gzip: " + err.Error()}
		}
		return nil, &FieldError{Index: -1, Field: "body", Msg: err.Error()}
	}
	if int64(len(b)) > limit {
		return nil, &FieldError{Index: -1, Field: "body", Msg: fmt.Sprintf("body over the limit of %d bytes", limit), Limit: true}
	}
	return b, nil
}

func writeFieldErr(w http.ResponseWriter, fe *FieldError) {
	code := http.StatusBadRequest
	switch {
	case fe.Limit:
		code = http.StatusRequestEntityTooLarge
	case fe.Field == "Content-Type" && fe.Index < 0:
		code = http.StatusUnsupportedMediaType
	}
	reply.Error(w, code, fe.Path(), fe.Error())
}

func (m *Module) publish(w http.ResponseWriter, r *http.Request, evs []event.Event) {
	if _, err := m.deps.Bus.Publish(r.Context(), evs); err != nil {
		m.deps.Logger.Warn("publish failed", "events", len(evs), "err", err)
		m.deps.Bus.WriteError(w, err)
		return
	}
	reply.JSON(w, http.StatusOK, map[string]bool{"success": true})
}

func (m *Module) single(typ string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, fe := readTracking(w, r, int64(m.cfg.MaxEventBytes))
		if fe != nil {
			writeFieldErr(w, fe)
			return
		}
		// The key usually comes as Basic auth; only a body key needs the body
		// decoded before normalize scans it.
		ok := m.keyOK(r, "")
		if !ok {
			var probe struct {
				WriteKey string `json:"writeKey"`
			}
			_ = json.Unmarshal(body, &probe)
			ok = m.keyOK(r, probe.WriteKey)
		}
		if !ok {
			reply.Error(w, http.StatusUnauthorized, "writeKey", "missing or unknown write key (HTTP Basic user, or writeKey in the body)")
			return
		}
		n := &normalizer{receivedAt: time.Now().UTC(), maxBytes: int(m.cfg.MaxEventBytes), geo: m.geoFor(r)}
		e, err := n.normalize(body, typ, -1)
		if err != nil {
			writeFieldErr(w, err.(*FieldError))
			return
		}
		m.publish(w, r, []event.Event{e})
	})
}

type batchBody struct {
	Batch        []json.RawMessage `json:"batch"`
	Context      map[string]any    `json:"context"`
	Integrations map[string]any    `json:"integrations"`
	SentAt       string            `json:"sentAt"`
	WriteKey     string            `json:"writeKey"`
}

func (m *Module) batch(w http.ResponseWriter, r *http.Request) {
	body, fe := readTracking(w, r, int64(m.cfg.MaxBatchBytes))
	if fe != nil {
		writeFieldErr(w, fe)
		return
	}
	var b batchBody
	if err := json.Unmarshal(body, &b); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			reply.Error(w, http.StatusBadRequest, ute.Field, fmt.Sprintf("%s: wrong JSON type (want {\"batch\": [...]})", ute.Field))
			return
		}
		reply.Error(w, http.StatusBadRequest, "body", "malformed JSON: "+err.Error())
		return
	}
	if !m.keyOK(r, b.WriteKey) {
		reply.Error(w, http.StatusUnauthorized, "writeKey", "missing or unknown write key (HTTP Basic user, or writeKey in the body)")
		return
	}
	if len(b.Batch) == 0 {
		reply.Error(w, http.StatusBadRequest, "batch", "required: a non-empty list of messages")
		return
	}
	n := &normalizer{receivedAt: time.Now().UTC(), context: b.Context, integrations: b.Integrations, maxBytes: int(m.cfg.MaxEventBytes), geo: m.geoFor(r)}
	if browser(r) {
		// ops.js sends no ids of its own (no cookies, no storage): the
		// visitor is derived here, once per request.
		client := clientip.From(r, m.trusted)
		n.visitor = func() (string, error) {
			salt, err := m.salts.today(r.Context())
			if err != nil {
				return "", err
			}
			return visitorID(salt, r, client), nil
		}
		if m.cfg.StoreIP && client.IsValid() {
			n.context = mergeMaps(n.context, map[string]any{"ip": client.String()}).(map[string]any)
		}
		// The browser's own User-Agent, as Segment's analytics.js puts it
		// in the context (ops.js leaves it to the request); the batch's or
		// the message's own wins.
		if ua := r.UserAgent(); ua != "" {
			n.context = mergeMaps(map[string]any{"userAgent": ua}, n.context).(map[string]any)
		}
	}
	if t, ok := parseTime(b.SentAt); ok {
		n.sentAt = t
	}
	evs := make([]event.Event, len(b.Batch))
	for i, raw := range b.Batch {
		e, err := n.normalize(raw, "", i)
		if err != nil {
			writeFieldErr(w, err.(*FieldError))
			return
		}
		evs[i] = e
	}
	if n.visitorID != "" {
		m.out.attribute(r.Context(), n.visitorID, evs)
	}
	m.publish(w, r, evs)
}

// gif is a transparent 1x1 GIF.
var gif, _ = base64.StdEncoding.DecodeString("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

// pixel serves /pixel/v1/track and /pixel/v1/page as the RudderStack
// gateway does: the message in the query string, a GIF back.
func (m *Module) pixel(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		msg := map[string]any{"type": typ}
		props := map[string]any{}
		ctx := map[string]any{}
		for k, vs := range q {
			v := vs[0]
			switch {
			case k == "writeKey":
			case strings.HasPrefix(k, "properties."):
				props[strings.TrimPrefix(k, "properties.")] = v
			case strings.HasPrefix(k, "context."):
				ctx[strings.TrimPrefix(k, "context.")] = v
			default:
				msg[k] = v
			}
		}
		if len(props) > 0 {
			msg["properties"] = props
		}
		if ua := r.UserAgent(); ua != "" {
			ctx["userAgent"] = ua
		}
		msg["context"] = ctx
		status := http.StatusOK
		defer func() {
			w.Header().Set("Content-Type", "image/gif")
			w.Header().Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
			w.WriteHeader(status)
			_, _ = w.Write(gif)
		}()
		if !m.keyOK(r, "") {
			status = http.StatusUnauthorized
			return
		}
		raw, _ := json.Marshal(msg)
		n := &normalizer{receivedAt: time.Now().UTC(), maxBytes: int(m.cfg.MaxEventBytes), geo: m.geoFor(r)}
		e, err := n.normalize(raw, typ, -1)
		if err != nil {
			status = http.StatusBadRequest
			return
		}
		if _, err := m.deps.Bus.Publish(r.Context(), []event.Event{e}); err != nil {
			status = http.StatusServiceUnavailable
		}
	}
}

// browser reports whether a batch came from the browser endpoints (the
// tracker's beacon and the short form), where cookieless ids are derived.
// geoFor returns the country lookup for messages of r: the message's own
// context.ip (server-side SDKs send the visitor's), else, for browser
// requests only, the client's address (a server's own address says
// nothing about its visitors). Only the country is kept; the address is
// stored only as collector.store_ip says.
func (m *Module) geoFor(r *http.Request) func([]byte) []byte {
	if m.geo == nil {
		return nil
	}
	var client netip.Addr
	if browser(r) {
		client = clientip.From(r, m.trusted)
	}
	return func(ctx []byte) []byte { return withCountry(ctx, m.geo, client) }
}

// withCountry adds location.country to a context that has none.
func withCountry(ctx []byte, db *geo.DB, client netip.Addr) []byte {
	var c map[string]any
	if err := json.Unmarshal(ctx, &c); err != nil || c == nil {
		return ctx
	}
	loc, _ := c["location"].(map[string]any)
	if s, _ := loc["country"].(string); s != "" {
		return ctx
	}
	addr := client
	if s, ok := c["ip"].(string); ok {
		if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
			addr = a
		}
	}
	cc := db.Country(addr)
	if cc == "" {
		return ctx
	}
	if loc == nil {
		loc = map[string]any{}
	}
	loc["country"] = cc
	c["location"] = loc
	out, err := json.Marshal(c)
	if err != nil {
		return ctx
	}
	return out
}

func browser(r *http.Request) bool {
	return r.URL.Path == "/beacon/v1/batch" || r.URL.Path == "/v1/b"
}

func sha256Sum(k string) [32]byte { return sha256.Sum256([]byte(k)) }
