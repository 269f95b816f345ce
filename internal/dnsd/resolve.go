package dnsd

import (
	"context"
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/miekg/dns"

	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/event"
)

// Transports, as events name them.
const (
	viaUDP = "udp"
	viaTCP = "tcp"
	viaDoT = "dot"
	viaDoH = "doh"
	viaDoQ = "doq"
)

// ednsSize is the UDP payload size Ops offers and asks for (DNS Flag Day
// 2020: 1232 avoids IP fragmentation).
const ednsSize = 1232

// outcome is what happened to a query, for its event and metrics.
type outcome struct {
	name, qtype string
	rcode       int
	blocked     bool
	rule        string
	upstream    string
	cached      string // "", "hit", "stale"
	// via and encrypted: how the query came (for the client check);
	// client: its dns.clients entry, or nil.
	via       string
	encrypted bool
	client    *dnsClient
	dnssec    string // when validating: secure, insecure or bogus
	// now: answer only without an upstream (resolveNow); a nil answer
	// says one is needed.
	now bool
}

// resolve answers one query from a client over a transport: checks it,
// applies the block lists, answers from the cache or the upstreams
// (identical queries in flight are asked once), and serves a stale answer
// when every upstream fails. It never returns nil.
func (s *Server) resolve(ctx context.Context, req *dns.Msg, c caller) *dns.Msg {
	start := time.Now()
	o := outcome{via: c.via, encrypted: c.encrypted, client: s.clientFor(c)}
	resp := s.answer(ctx, req, &o)
	finish(req, resp, c.via)
	s.record(start, req, resp, c.addr, c.via, &o)
	return resp
}

// resolveNow is resolve for what needs no upstream (a cached answer, a
// block, the client check, an error): nil when the answer must be
// fetched, which resolve then does (a server that must not wait on
// upstreams, like the DoH listener's read loop, calls it first).
func (s *Server) resolveNow(req *dns.Msg, c caller) *dns.Msg {
	start := time.Now()
	o := outcome{via: c.via, encrypted: c.encrypted, client: s.clientFor(c), now: true}
	resp := s.answer(context.Background(), req, &o)
	if resp == nil {
		return nil
	}
	finish(req, resp, c.via)
	s.record(start, req, resp, c.addr, c.via, &o)
	return resp
}

func (s *Server) answer(ctx context.Context, req *dns.Msg, o *outcome) *dns.Msg {
	if req.Response || req.Opcode != dns.OpcodeQuery {
		return rcodeReply(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return rcodeReply(req, dns.RcodeFormatError)
	}
	q := req.Question[0]
	name := canonName(q.Name)
	o.name, o.qtype = name, dns.TypeToString[q.Qtype]
	if o.qtype == "" {
		o.qtype = strconv.Itoa(int(q.Qtype))
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return rcodeReply(req, dns.RcodeNotImplemented)
	}
	if tok, ok := s.checkToken(name); ok {
		o.rule = "client_check"
		return s.checkAnswer(req, tok, o.via, o.encrypted)
	}
	if by, blocked := s.live.match(name); blocked {
		o.blocked, o.rule = true, by
		return s.blockedAnswer(req)
	}
	allowed := false
	if cl := o.client; cl != nil {
		var by string
		var blocked bool
		if blocked, allowed, by = cl.decide(name, time.Now()); blocked {
			o.blocked, o.rule = true, by
			return s.blockedAnswer(req)
		}
	}
	if !allowed {
		if blocked, by := s.filter().match(name); blocked {
			o.blocked, o.rule = true, by
			return s.blockedAnswer(req)
		}
		// Phishing protection: a name it would block (a feed's domain, a
		// close lookalike of a protected one) is answered as blocked; a
		// warning cannot be shown in DNS, so lesser verdicts pass (the
		// forward proxy warns).
		if s.deps.Phish != nil {
			if v := s.deps.Phish.CheckHost(name); v.Action == "block" {
				o.blocked, o.rule = true, "phishing"
				for i, r := range v.Reasons {
					sep := ": "
					if i > 0 {
						sep = "; "
					}
					o.rule += sep + r.Detail
				}
				return s.blockedAnswer(req)
			}
		}
	}
	if s.cfg.SafeSearch || o.client != nil && o.client.cfg.SafeSearch {
		if t := safeTarget(name); t != "" {
			if o.now {
				return nil
			}
			return s.safeAnswer(ctx, req, t, o)
		}
	}
	key := keyOf(req, name)
	if m, stale, prefetch := s.cache.get(key); m != nil && !stale {
		o.cached = "hit"
		s.metrics.hit.Inc()
		if s.valid != nil && !req.CheckingDisabled {
			o.dnssec = "insecure"
			if m.AuthenticatedData {
				o.dnssec = "secure"
			}
		}
		if prefetch {
			s.metrics.prefetch.Inc()
			q := req.Copy()
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout.D())
				defer cancel()
				_, _ = s.fetch(ctx, q, key, name)
			}()
		}
		return m
	}
	if o.now {
		return nil
	}
	s.metrics.miss.Inc()
	a, err := s.fetch(ctx, req, key, name)
	if err != nil {
		s.log.Debug("upstreams failed", "name", name, "err", err)
		if m, stale, _ := s.cache.get(key); m != nil && stale {
			o.cached = "stale"
			s.metrics.stale.Inc()
			return m
		}
		return rcodeReply(req, dns.RcodeServerFailure)
	}
	o.upstream, o.dnssec = a.by, a.dnssec
	return a.r.Copy() // shared with every query that waited on it
}

// fetch asks the upstreams for key (once, however many queries wait on
// it) and caches the answer.
func (s *Server) fetch(ctx context.Context, req *dns.Msg, key cacheKey, name string) (answered, error) {
	v, err, _ := s.flight.Do(flightKey(key), func() (any, error) {
		up := upstreamQuery(req, s.cfg.StripECS)
		validate := s.valid != nil && !req.CheckingDisabled
		if s.valid != nil {
			// Signatures and bogus data alike come back; Ops decides.
			up.CheckingDisabled = true
			up.IsEdns0().SetDo()
		}
		r, u, err := s.router.pick(name).exchange(ctx, up)
		if err != nil {
			return nil, err
		}
		a := answered{r: r, by: u.String()}
		if validate {
			x := s.valid.check(ctx, req.Question[0].Name, req.Question[0].Qtype, r)
			a.dnssec = x.state.String()
			s.metrics.dnssec.WithLabelValues(a.dnssec).Inc()
			switch x.state {
			case secure:
				r.AuthenticatedData = true
			case bogus:
				s.log.Debug("dnssec: bogus answer", "name", name, "why", x.why)
				a.r = bogusReply(req, x.why)
				return a, nil // not cached: asked again next time
			default:
				r.AuthenticatedData = false
			}
		}
		s.cache.put(key, r)
		return a, nil
	})
	if err != nil {
		return answered{}, err
	}
	return v.(answered), nil
}

type answered struct {
	r      *dns.Msg
	by     string
	dnssec string // secure, insecure or bogus when validating
}

// askSigned asks the upstreams for name's records with DNSSEC records
// and without their own validation: the validator's queries.
func (s *Server) askSigned(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.CheckingDisabled = true
	m.SetEdns0(ednsSize, true)
	r, _, err := s.router.pick(canonName(name)).exchange(ctx, m)
	return r, err
}

// bogusReply is SERVFAIL with an Extended DNS Error (RFC 8914, 6 "DNSSEC
// Bogus") saying why, which finish keeps for clients that use EDNS(0).
func bogusReply(req *dns.Msg, why string) *dns.Msg {
	m := rcodeReply(req, dns.RcodeServerFailure)
	m.SetEdns0(ednsSize, false)
	if len(why) > 200 {
		why = why[:200]
	}
	o := m.IsEdns0()
	o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeDNSBogus, ExtraText: why})
	return m
}

// flightKey names a query for merging identical ones in flight.
func flightKey(k cacheKey) string {
	b := make([]byte, 0, len(k.name)+16)
	b = append(b, k.name...)
	b = strconv.AppendUint(append(b, '/'), uint64(k.qtype), 10)
	b = strconv.AppendUint(append(b, '/'), uint64(k.qclass), 10)
	if k.do {
		b = append(b, "/do"...)
	}
	if k.cd {
		b = append(b, "/cd"...)
	}
	return string(b)
}

// upstreamQuery is what goes upstream: the question, with a new id,
// recursion desired, EDNS(0) offering ednsSize with the client's DO bit,
// and no Client Subnet when strip is set (nor cookies, padding or other
// options of the client's).
func upstreamQuery(req *dns.Msg, strip bool) *dns.Msg {
	m := new(dns.Msg)
	m.Id = dns.Id()
	m.RecursionDesired = true
	m.CheckingDisabled = req.CheckingDisabled
	m.Question = []dns.Question{req.Question[0]}
	do := false
	var ecs *dns.EDNS0_SUBNET
	if o := req.IsEdns0(); o != nil {
		do = o.Do()
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok && !strip {
				ecs = e
			}
		}
	}
	m.SetEdns0(ednsSize, do)
	if ecs != nil {
		o := m.IsEdns0()
		o.Option = append(o.Option, ecs)
	}
	return m
}

// rcodeReply is an empty answer with a code.
func rcodeReply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	return m
}

// blockedAnswer answers a blocked name per dns.block.mode.
func (s *Server) blockedAnswer(req *dns.Msg) *dns.Msg {
	switch s.cfg.Block.Mode {
	case "nxdomain":
		return rcodeReply(req, dns.RcodeNameError)
	case "refused":
		return rcodeReply(req, dns.RcodeRefused)
	}
	m := rcodeReply(req, dns.RcodeSuccess)
	q := req.Question[0]
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 10, Rrtype: q.Qtype}
	v4, v6 := netip.IPv4Unspecified(), netip.IPv6Unspecified()
	if s.cfg.Block.Mode != "null" {
		a := netip.MustParseAddr(s.cfg.Block.Mode)
		if a.Is4() {
			v4 = a
		} else {
			v6 = a
		}
	}
	switch q.Qtype {
	case dns.TypeA:
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: v4.AsSlice()}}
	case dns.TypeAAAA:
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: v6.AsSlice()}}
	}
	return m
}

// finish makes resp an answer to req: its id and question, flags, and
// EDNS(0) only when the client used it (with padding on encrypted
// transports when the client padded, RFC 7830/8467).
func finish(req, resp *dns.Msg, via string) {
	resp.Id = req.Id
	resp.Response = true
	resp.Opcode = req.Opcode
	resp.RecursionDesired = req.RecursionDesired
	resp.RecursionAvailable = true
	if len(req.Question) == 1 {
		resp.Question = req.Question
	}
	var keep []dns.RR
	var ede []dns.EDNS0
	for _, rr := range resp.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			for _, opt := range o.Option {
				if e, ok := opt.(*dns.EDNS0_EDE); ok {
					ede = append(ede, e)
				}
			}
			continue
		}
		keep = append(keep, rr)
	}
	resp.Extra = keep
	ro := req.IsEdns0()
	do := ro != nil && ro.Do()
	if !do {
		// DNSSEC records only for clients that asked for them (RFC 4035
		// 3.2.1); the validating resolver asks upstream with DO set.
		resp.Answer = stripDNSSEC(resp.Answer, req)
		resp.Ns = stripDNSSEC(resp.Ns, req)
		resp.Extra = stripDNSSEC(resp.Extra, req)
		// AD only to a client that set DO or AD (RFC 6840 5.8).
		resp.AuthenticatedData = resp.AuthenticatedData && req.AuthenticatedData
	}
	if ro == nil {
		return
	}
	resp.SetEdns0(ednsSize, do)
	if len(ede) > 0 {
		o := resp.IsEdns0()
		o.Option = append(o.Option, ede...)
	}
	padded := false
	for _, opt := range ro.Option {
		if _, ok := opt.(*dns.EDNS0_PADDING); ok {
			padded = true
		}
	}
	if padded && (via == viaDoT || via == viaDoH || via == viaDoQ) {
		pad(resp, 468)
	}
}

// stripDNSSEC drops RRSIG, NSEC and NSEC3 records (but not the type
// asked for), in place; most answers have none and are returned as they
// are.
func stripDNSSEC(sec []dns.RR, req *dns.Msg) []dns.RR {
	qtype := uint16(0)
	if len(req.Question) == 1 {
		qtype = req.Question[0].Qtype
	}
	drop := func(t uint16) bool {
		return t != qtype && (t == dns.TypeRRSIG || t == dns.TypeNSEC || t == dns.TypeNSEC3)
	}
	n := 0
	for _, rr := range sec {
		if drop(rr.Header().Rrtype) {
			n++
		}
	}
	if n == 0 {
		return sec
	}
	out := make([]dns.RR, 0, len(sec)-n)
	for _, rr := range sec {
		if !drop(rr.Header().Rrtype) {
			out = append(out, rr)
		}
	}
	return out
}

// pad adds an EDNS(0) padding option so the message is a multiple of
// block bytes long (RFC 8467's recommended 468 for responses).
func pad(m *dns.Msg, block int) {
	o := m.IsEdns0()
	p := &dns.EDNS0_PADDING{}
	o.Option = append(o.Option, p)
	n := m.Len() // with an empty option: its 4 header bytes counted
	if r := n % block; r != 0 {
		p.Padding = make([]byte, block-r)
	}
}

// queryData is the data of an ev.dns.query event.
type queryData struct {
	Client     string  `json:"client,omitempty"`      // anonymised: its /24 or /48
	ClientName string  `json:"client_name,omitempty"` // its dns.clients entry
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Rcode      string  `json:"rcode"`
	Answers    int     `json:"answers"`
	Blocked    bool    `json:"blocked,omitempty"`
	Rule       string  `json:"rule,omitempty"` // list file and line
	Upstream   string  `json:"upstream,omitempty"`
	Cached     string  `json:"cached,omitempty"` // hit or stale
	Transport  string  `json:"transport"`
	DNSSEC     string  `json:"dnssec,omitempty"` // secure, insecure or bogus, when validating
	DurationMS float64 `json:"duration_ms"`
}

func clientName(c *dnsClient) string {
	if c == nil {
		return ""
	}
	return c.cfg.Name
}

// appendJSON encodes d as encoding/json would (TestQueryDataJSON holds it
// to that), without reflection: an event is made per query.
func (d *queryData) appendJSON(b []byte) []byte {
	b = append(b, '{')
	str := func(k, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		b = appendJSONString(b, v)
	}
	str("client", d.Client, true)
	str("client_name", d.ClientName, true)
	str("name", d.Name, false)
	str("type", d.Type, false)
	str("rcode", d.Rcode, false)
	b = strconv.AppendInt(append(b, `,"answers":`...), int64(d.Answers), 10)
	if d.Blocked {
		b = append(b, `,"blocked":true`...)
	}
	str("rule", d.Rule, true)
	str("upstream", d.Upstream, true)
	str("cached", d.Cached, true)
	str("transport", d.Transport, false)
	str("dnssec", d.DNSSEC, true)
	b = appendJSONFloat(append(b, `,"duration_ms":`...), d.DurationMS)
	return append(b, '}')
}

// appendJSONString quotes s as JSON: quotes, backslashes and control
// characters escaped (DNS names may hold any byte, escaped \DDD by
// miekg/dns), invalid UTF-8 as U+FFFD as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r < 0x20 || r == '<' || r == '>' || r == '&' || r == 0x2028 || r == 0x2029:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4&0xf], hex[r&0xf])
			if r >= 0x100 {
				b = b[:len(b)-4]
				b = append(b, hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
			}
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// appendJSONFloat formats f as encoding/json does (exponents only below
// 1e-6 and from 1e21, without a leading zero in them).
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if n := len(b); format == 'e' && n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1]
		b = b[:n-1]
	}
	return b
}

// record counts the query and makes its event.
func (s *Server) record(start time.Time, req, resp *dns.Msg, client netip.Addr, via string, o *outcome) {
	d := time.Since(start)
	rcode := dns.RcodeToString[resp.Rcode]
	s.metrics.query(via, resp.Rcode, rcode).Inc()
	if o.blocked {
		s.metrics.blocked.Inc()
	}
	s.metrics.latencyOf[via].Observe(d.Seconds())
	if o.name == "" {
		return
	}
	anon := ""
	if client.IsValid() {
		anon = clientip.Anonymize(client).String()
	}
	who := clientName(o.client)
	if who == "" {
		who = anon
	}
	s.stats.add(start, o, who)
	if s.events == nil {
		return
	}
	data := queryData{ClientName: clientName(o.client), Client: anon, Name: o.name, Type: o.qtype, Rcode: rcode, Blocked: o.blocked, Rule: o.rule, Upstream: o.upstream,
		Cached: o.cached, Transport: via, DNSSEC: o.dnssec, DurationMS: float64(d.Microseconds()) / 1000, Answers: len(resp.Answer)}
	ev := event.NewJSON("ops/dns", "dns.query", data.appendJSON(make([]byte, 0, 256)))
	ev.Time = start.UTC()
	s.events.Add(ev)
}
