package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
)

// CoAP is the collector for constrained devices (RFC 7252 over UDP):
// POST /track, /page, /screen, /identify, /group, /alias and /batch with a
// JSON (content-format 50) or CBOR (60) payload, confirmable or not, block-
// wise for large payloads. The write key is a URI query option (key=... or
// writeKey=...). 2.04 Changed answers only after the bus stored the events.
type CoAP struct {
	cfg    config.Collector
	listen string
	bus    *bus.Bus
	log    *slog.Logger
	keys   map[[32]byte]bool
	api    *apiKeys
	addr   chan string
}

// NewCoAP prepares the CoAP collector.
func NewCoAP(listen string, cfg config.Collector, b *bus.Bus, log *slog.Logger) *CoAP {
	c := &CoAP{cfg: cfg, listen: listen, bus: b, log: log, keys: map[[32]byte]bool{}, api: &apiKeys{b: b}, addr: make(chan string, 1)}
	for _, k := range cfg.WriteKeys {
		c.keys[sha256Sum(k)] = true
	}
	return c
}

// Addr reports the bound UDP address once the server listens.
func (c *CoAP) Addr() <-chan string { return c.addr }

// Run serves until ctx ends.
func (c *CoAP) Run(ctx context.Context, ready func()) error {
	if err := c.api.open(ctx); err != nil {
		return err
	}
	l, err := coapnet.NewListenUDP("udp", c.listen)
	if err != nil {
		return fmt.Errorf("coap listen %s: %w", c.listen, err)
	}
	defer func() { _ = l.Close() }()
	r := mux.NewRouter()
	for typ := range Types {
		_ = r.Handle("/"+typ, c.handler(typ))
	}
	_ = r.Handle("/batch", c.handler(""))
	s := udp.NewServer(options.WithMux(r), options.WithContext(ctx),
		options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second))
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	c.log.Info("listening", "coap", l.LocalAddr().String())
	c.addr <- l.LocalAddr().String()
	ready()
	select {
	case <-ctx.Done():
		s.Stop()
		if err := <-errc; err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	case err := <-errc:
		return fmt.Errorf("coap: %w", err)
	}
}

var cborDec, _ = cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any(nil)), MaxNestedLevels: 32, MaxArrayElements: 10000, MaxMapPairs: 10000}.DecMode()

// payloadJSON turns a CoAP payload into JSON: JSON as is (checked), CBOR
// decoded and re-encoded. Errors become 4.00 or 4.15.
func payloadJSON(format message.MediaType, body []byte) ([]byte, codes.Code, error) {
	switch format {
	case message.AppJSON:
		if !json.Valid(body) {
			return nil, codes.BadRequest, errors.New("payload: malformed JSON")
		}
		return body, 0, nil
	case message.AppCBOR:
		var v any
		if err := cborDec.Unmarshal(body, &v); err != nil {
			return nil, codes.BadRequest, fmt.Errorf("payload: malformed CBOR: %v", err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, codes.BadRequest, fmt.Errorf("payload: CBOR value has no JSON form: %v", err)
		}
		return b, 0, nil
	}
	return nil, codes.UnsupportedMediaType, fmt.Errorf("content-format %d: want 50 (application/json) or 60 (application/cbor)", format)
}

func (c *CoAP) handler(typ string) mux.Handler {
	return mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		diag := func(code codes.Code, msg string) {
			_ = w.SetResponse(code, message.TextPlain, bytes.NewReader([]byte(msg)))
		}
		if r.Code() != codes.POST {
			diag(codes.MethodNotAllowed, "use POST")
			return
		}
		qs, _ := r.Queries()
		ok := false
		for _, q := range qs {
			k, v, _ := strings.Cut(q, "=")
			if h := sha256Sum(v); (k == "key" || k == "writeKey") && (c.keys[h] || c.api.valid(h)) {
				ok = true
			}
		}
		if !ok {
			diag(codes.Unauthorized, "writeKey: missing or unknown write key (URI query option key=...)")
			return
		}
		format, err := r.ContentFormat()
		if err != nil {
			diag(codes.UnsupportedMediaType, "content-format: required, 50 (application/json) or 60 (application/cbor)")
			return
		}
		body, err := r.ReadBody()
		if err != nil {
			diag(codes.BadRequest, "payload: "+err.Error())
			return
		}
		limit := int(c.cfg.MaxEventBytes)
		if typ == "" {
			limit = int(c.cfg.MaxBatchBytes)
		}
		if len(body) > limit {
			diag(codes.RequestEntityTooLarge, fmt.Sprintf("payload: %d bytes, over the limit of %d", len(body), limit))
			return
		}
		js, code, err := payloadJSON(format, body)
		if err != nil {
			diag(code, err.Error())
			return
		}
		n := &normalizer{receivedAt: time.Now().UTC(), maxBytes: int(c.cfg.MaxEventBytes)}
		var evs []event.Event
		if typ != "" {
			e, err := n.normalize(js, typ, -1)
			if err != nil {
				diag(codes.BadRequest, err.Error())
				return
			}
			evs = append(evs, e)
		} else {
			var b batchBody
			if err := json.Unmarshal(js, &b); err != nil || len(b.Batch) == 0 {
				diag(codes.BadRequest, `batch: want {"batch": [messages]}`)
				return
			}
			n.context, n.integrations = b.Context, b.Integrations
			if t, ok := parseTime(b.SentAt); ok {
				n.sentAt = t
			}
			for i, raw := range b.Batch {
				e, err := n.normalize(raw, "", i)
				if err != nil {
					diag(codes.BadRequest, err.Error())
					return
				}
				evs = append(evs, e)
			}
		}
		if _, err := c.bus.Publish(r.Context(), evs); err != nil {
			diag(codes.ServiceUnavailable, err.Error())
			return
		}
		_ = w.SetResponse(codes.Changed, message.TextPlain, bytes.NewReader(nil))
	})
}
