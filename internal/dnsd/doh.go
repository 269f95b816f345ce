package dnsd

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/opsgraph/ops/internal/reply"
)

// serveDoH answers DNS over HTTPS at /dns-query:
//
//	GET  /dns-query?dns=<base64url message>            RFC 8484, application/dns-message
//	POST /dns-query  (Content-Type: application/dns-message)
//	GET  /dns-query?name=example.com&type=AAAA[&do=1&cd=1]   JSON, as Google's and Cloudflare's
//
// (or Accept: application/dns-json with ?dns=). Bad requests get 400 (a
// message that does not parse, a missing parameter), 413 (over 65535
// bytes) or 415 (another content type), naming what was wrong.
func (s *Server) serveDoH(w http.ResponseWriter, r *http.Request) {
	req, c, asJSON, ok := s.dohQuery(w, r, r.PathValue("client"))
	if !ok {
		return
	}
	dohReply(w, s.resolve(r.Context(), req, c), asJSON)
}

// dohQuery reads a DoH request's query and who asks (token: the client
// token of its path, "" for none); when the request is bad it answers it
// and returns false.
func (s *Server) dohQuery(w http.ResponseWriter, r *http.Request, token string) (*dns.Msg, caller, bool, bool) {
	req, asJSON, field, err := readDoH(r)
	if err != nil {
		code := http.StatusBadRequest
		switch field {
		case "Content-Type":
			code = http.StatusUnsupportedMediaType
		case "body":
			code = http.StatusRequestEntityTooLarge
		}
		reply.Error(w, code, field, err.Error())
		return nil, caller{}, false, false
	}
	c := caller{via: viaDoH, encrypted: r.TLS != nil, token: token}
	if c.token != "" && s.byToken[c.token] == nil {
		reply.Error(w, http.StatusNotFound, "client", "client: no dns.clients entry has this doh_token")
		return nil, caller{}, false, false
	}
	if s.deps.ClientIP != nil {
		c.addr = s.deps.ClientIP(r)
	}
	return req, c, asJSON, true
}

// dohReply writes resp as a DoH answer.
func dohReply(w http.ResponseWriter, resp *dns.Msg, asJSON bool) {
	if ttl, ok := minTTL(resp); ok {
		w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(int(ttl)))
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	if asJSON {
		w.Header().Set("Content-Type", "application/dns-json")
		_ = json.NewEncoder(w).Encode(jsonAnswer(resp))
		return
	}
	wire, err := resp.Pack()
	if err != nil {
		reply.Error(w, http.StatusInternalServerError, "", "packing the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/dns-message")
	w.Header().Set("Content-Length", strconv.Itoa(len(wire)))
	_, _ = w.Write(wire)
}

// readDoH reads the query of a DoH request; on error it names the field.
func readDoH(r *http.Request) (m *dns.Msg, asJSON bool, field string, err error) {
	q := r.URL.Query()
	asJSON = strings.Contains(r.Header.Get("Accept"), "application/dns-json") || q.Get("ct") == "application/dns-json"
	var wire []byte
	switch {
	case r.Method == http.MethodPost:
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if ct != "application/dns-message" {
			return nil, false, "Content-Type", fmt.Errorf("Content-Type: want application/dns-message, got %q", r.Header.Get("Content-Type"))
		}
		if n := r.ContentLength; n > dns.MaxMsgSize {
			return nil, false, "body", fmt.Errorf("body: a DNS message is at most %d bytes", dns.MaxMsgSize)
		} else if n > 0 {
			wire = make([]byte, n) // the usual case: one read of a known size
			if _, err = io.ReadFull(r.Body, wire); err != nil {
				return nil, false, "body", fmt.Errorf("body: %v", err)
			}
		} else if wire, err = io.ReadAll(io.LimitReader(r.Body, dns.MaxMsgSize+1)); err != nil {
			return nil, false, "body", err
		}
		if len(wire) > dns.MaxMsgSize {
			return nil, false, "body", fmt.Errorf("body: a DNS message is at most %d bytes", dns.MaxMsgSize)
		}
	case q.Has("dns"):
		v := strings.TrimRight(q.Get("dns"), "=")
		if len(v) > 2*dns.MaxMsgSize {
			return nil, false, "body", fmt.Errorf("dns: a DNS message is at most %d bytes", dns.MaxMsgSize)
		}
		wire, err = base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			return nil, false, "dns", fmt.Errorf("dns: not base64url (RFC 4648 section 5, no padding): %v", err)
		}
	case q.Has("name"):
		return jsonQuery(q.Get("name"), q.Get("type"), q.Get("do"), q.Get("cd"))
	default:
		return nil, false, "dns", fmt.Errorf("dns: missing; give ?dns=<base64url DNS message> (RFC 8484) or ?name=<domain>&type=<type> (JSON)")
	}
	m = new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		return nil, false, "dns", fmt.Errorf("dns: not a DNS message: %v", err)
	}
	if len(m.Question) != 1 {
		return nil, false, "dns", fmt.Errorf("dns: want one question, got %d", len(m.Question))
	}
	return m, asJSON, "", nil
}

// jsonQuery is the query of a JSON request (?name=&type=).
func jsonQuery(name, typ, do, cd string) (*dns.Msg, bool, string, error) {
	if _, ok := dns.IsDomainName(name); !ok || name == "" || len(name) > 253 {
		return nil, true, "name", fmt.Errorf("name: %q is not a domain name", name)
	}
	qtype := dns.TypeA
	if typ != "" {
		if n, err := strconv.ParseUint(typ, 10, 16); err == nil {
			qtype = uint16(n)
		} else if t, ok := dns.StringToType[strings.ToUpper(typ)]; ok {
			qtype = t
		} else {
			return nil, true, "type", fmt.Errorf("type: %q is not a record type (A, AAAA, MX, 28, ...)", typ)
		}
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.CheckingDisabled = truthy(cd)
	if truthy(do) {
		m.SetEdns0(ednsSize, true)
	}
	return m, true, "", nil
}

func truthy(s string) bool { return s == "1" || strings.EqualFold(s, "true") }

// minTTL is how long an answer may be cached by HTTP caches.
func minTTL(m *dns.Msg) (uint32, bool) {
	low, any := ^uint32(0), false
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			low, any = min(low, rr.Header().Ttl), true
		}
	}
	return low, any && (m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError)
}

// jsonRR and jsonMsg are the JSON answer, in Google's and Cloudflare's shape.
type jsonRR struct {
	Name string `json:"name"`
	Type uint16 `json:"type"`
	TTL  uint32 `json:"TTL"`
	Data string `json:"data"`
}

type jsonMsg struct {
	Status    int      `json:"Status"`
	TC        bool     `json:"TC"`
	RD        bool     `json:"RD"`
	RA        bool     `json:"RA"`
	AD        bool     `json:"AD"`
	CD        bool     `json:"CD"`
	Question  []jsonQ  `json:"Question"`
	Answer    []jsonRR `json:"Answer,omitempty"`
	Authority []jsonRR `json:"Authority,omitempty"`
}

type jsonQ struct {
	Name string `json:"name"`
	Type uint16 `json:"type"`
}

func jsonAnswer(m *dns.Msg) jsonMsg {
	out := jsonMsg{Status: m.Rcode, TC: m.Truncated, RD: m.RecursionDesired, RA: m.RecursionAvailable, AD: m.AuthenticatedData, CD: m.CheckingDisabled}
	for _, q := range m.Question {
		out.Question = append(out.Question, jsonQ{Name: q.Name, Type: q.Qtype})
	}
	conv := func(rrs []dns.RR) []jsonRR {
		var o []jsonRR
		for _, rr := range rrs {
			h := rr.Header()
			o = append(o, jsonRR{Name: h.Name, Type: h.Rrtype, TTL: h.Ttl, Data: strings.TrimPrefix(rr.String(), h.String())})
		}
		return o
	}
	out.Answer, out.Authority = conv(m.Answer), conv(m.Ns)
	return out
}
