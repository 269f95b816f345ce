package dnsd_test

import (
	"crypto"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// signedZone is a zone the test signs itself (ECDSA P-256, miekg/dns),
// with an NSEC or NSEC3 chain, served by signedServer.
type signedZone struct {
	apex     string
	signed   bool
	nsec3    bool
	ksk, zsk *dns.DNSKEY
	kskPriv  crypto.Signer
	zskPriv  crypto.Signer
	rrs      map[string]map[uint16][]dns.RR
	sigs     map[string]map[uint16][]dns.RR
	denial   []dns.RR // NSEC or NSEC3 records
}

func newZone(t *testing.T, apex string, signed, nsec3 bool, records ...string) *signedZone {
	t.Helper()
	z := &signedZone{apex: apex, signed: signed, nsec3: nsec3, rrs: map[string]map[uint16][]dns.RR{}, sigs: map[string]map[uint16][]dns.RR{}}
	z.add(t, apex+" 3600 IN SOA ns."+apex+" admin."+apex+" 1 3600 600 86400 300", apex+" 3600 IN NS ns."+apex)
	z.add(t, records...)
	if signed {
		z.ksk, z.kskPriv = genKey(t, apex, 257)
		z.zsk, z.zskPriv = genKey(t, apex, 256)
		z.put(z.ksk)
		z.put(z.zsk)
	}
	return z
}

func genKey(t *testing.T, apex string, flags uint16) (*dns.DNSKEY, crypto.Signer) {
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: flags, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := k.Generate(256)
	if err != nil {
		t.Fatal(err)
	}
	return k, priv.(crypto.Signer)
}

func (z *signedZone) add(t *testing.T, records ...string) {
	t.Helper()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		z.put(rr)
	}
}

func (z *signedZone) put(rr dns.RR) {
	h := rr.Header()
	n := dns.CanonicalName(h.Name)
	if z.rrs[n] == nil {
		z.rrs[n] = map[uint16][]dns.RR{}
	}
	z.rrs[n][h.Rrtype] = append(z.rrs[n][h.Rrtype], rr)
}

// delegation: a name below the apex with NS records (and no SOA).
func (z *signedZone) delegation(n string) bool {
	return n != z.apex && z.rrs[n][dns.TypeNS] != nil
}

func (z *signedZone) sign(t *testing.T, set []dns.RR, from, to time.Time) []dns.RR {
	t.Helper()
	key, priv := z.zsk, z.zskPriv
	if set[0].Header().Rrtype == dns.TypeDNSKEY {
		key, priv = z.ksk, z.kskPriv
	}
	sig := &dns.RRSIG{Hdr: dns.RR_Header{Ttl: set[0].Header().Ttl}, Algorithm: key.Algorithm, SignerName: z.apex, KeyTag: key.KeyTag(),
		Inception: uint32(from.Unix()), Expiration: uint32(to.Unix())}
	if err := sig.Sign(priv, set); err != nil {
		t.Fatal(err)
	}
	return []dns.RR{sig}
}

// finish builds the NSEC or NSEC3 chain and signs every authoritative
// RRset (not delegation NS sets).
func (z *signedZone) finish(t *testing.T) {
	if !z.signed {
		return
	}
	var names []string
	for n := range z.rrs {
		names = append(names, n)
	}
	types := func(n string) []uint16 {
		var ts []uint16
		for tp := range z.rrs[n] {
			ts = append(ts, tp)
		}
		if !z.delegation(n) || z.rrs[n][dns.TypeDS] != nil {
			ts = append(ts, dns.TypeRRSIG)
		}
		if !z.nsec3 {
			ts = append(ts, dns.TypeNSEC)
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
		return ts
	}
	if z.nsec3 {
		type h struct{ hash, name string }
		var hs []h
		for _, n := range names {
			hs = append(hs, h{dns.HashName(n, dns.SHA1, 0, ""), n})
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i].hash < hs[j].hash })
		for i, x := range hs {
			z.denial = append(z.denial, &dns.NSEC3{Hdr: dns.RR_Header{Name: strings.ToLower(x.hash) + "." + z.apex, Rrtype: dns.TypeNSEC3, Class: dns.ClassINET, Ttl: 300},
				Hash: dns.SHA1, Iterations: 0, SaltLength: 0, Salt: "", HashLength: 20, NextDomain: hs[(i+1)%len(hs)].hash, TypeBitMap: types(x.name)})
		}
	} else {
		sort.Slice(names, func(i, j int) bool { return canonLess(names[i], names[j]) })
		for i, n := range names {
			z.denial = append(z.denial, &dns.NSEC{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: 300},
				NextDomain: names[(i+1)%len(names)], TypeBitMap: types(n)})
		}
	}
	now := time.Now()
	for n, byType := range z.rrs {
		for tp, set := range byType {
			if tp == dns.TypeNS && z.delegation(n) {
				continue
			}
			if z.sigs[n] == nil {
				z.sigs[n] = map[uint16][]dns.RR{}
			}
			z.sigs[n][tp] = z.sign(t, set, now.Add(-time.Hour), now.Add(24*time.Hour))
		}
	}
	for _, d := range z.denial {
		n := dns.CanonicalName(d.Header().Name)
		if z.sigs[n] == nil {
			z.sigs[n] = map[uint16][]dns.RR{}
		}
		z.sigs[n][d.Header().Rrtype] = z.sign(t, []dns.RR{d}, now.Add(-time.Hour), now.Add(24*time.Hour))
	}
}

func canonLess(a, b string) bool {
	la, lb := dns.SplitDomainName(a), dns.SplitDomainName(b)
	for i, j := len(la)-1, len(lb)-1; ; i, j = i-1, j-1 {
		switch {
		case i < 0 && j < 0:
			return false
		case i < 0:
			return true
		case j < 0:
			return false
		}
		if la[i] != lb[j] {
			return la[i] < lb[j]
		}
	}
}

// ds is the DS record of the zone's key-signing key, for its parent or a
// trust anchor.
func (z *signedZone) ds() *dns.DS { return z.ksk.ToDS(dns.SHA256) }

// signedServer answers like a recursive resolver that hands on whatever
// the zones hold (it does not validate): the deepest zone holding a name
// answers it, a DS query its parent.
type signedServer struct {
	zones []*signedZone
	addr  string
	// noProof: names answered NXDOMAIN without NSEC records; replayed:
	// names answered NXDOMAIN with the proof for another name (what an
	// attacker who recorded one could send).
	noProof, replayed map[string]string
}

func (s *signedServer) zoneFor(name string, qtype uint16) *signedZone {
	var best *signedZone
	for _, z := range s.zones {
		if !dns.IsSubDomain(z.apex, name) {
			continue
		}
		if qtype == dns.TypeDS && z.apex == name {
			continue
		}
		if best == nil || len(z.apex) > len(best.apex) {
			best = z
		}
	}
	return best
}

func (s *signedServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = false
	m.RecursionAvailable = true
	do := req.IsEdns0() != nil && req.IsEdns0().Do()
	z := s.zoneFor(name, q.Qtype)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	withSigs := func(sec []dns.RR, n string, tp uint16) []dns.RR {
		if do {
			sec = append(sec, z.sigs[n][tp]...)
		}
		return sec
	}
	addSet := func(sec []dns.RR, rrs []dns.RR) []dns.RR {
		for _, rr := range rrs {
			sec = append(sec, dns.Copy(rr))
		}
		return sec
	}
	soa := func() {
		m.Ns = withSigs(addSet(m.Ns, z.rrs[z.apex][dns.TypeSOA]), z.apex, dns.TypeSOA)
	}
	denial := func(match func(dns.RR) bool) {
		if !do || !z.signed {
			return
		}
		for _, d := range z.denial {
			if match(d) {
				m.Ns = withSigs(append(m.Ns, d), dns.CanonicalName(d.Header().Name), d.Header().Rrtype)
			}
		}
	}
	covers := func(n string) func(dns.RR) bool {
		return func(d dns.RR) bool {
			switch x := d.(type) {
			case *dns.NSEC3:
				return x.Cover(n)
			case *dns.NSEC:
				owner, next := x.Hdr.Name, x.NextDomain
				if canonLess(owner, next) {
					return canonLess(owner, n) && canonLess(n, next)
				}
				return canonLess(owner, n) || canonLess(n, next)
			}
			return false
		}
	}
	matches := func(n string) func(dns.RR) bool {
		return func(d dns.RR) bool {
			if x, ok := d.(*dns.NSEC3); ok {
				return x.Match(n)
			}
			return dns.CanonicalName(d.Header().Name) == n
		}
	}
	if other, ok := s.replayed[name]; ok {
		m.Rcode = dns.RcodeNameError
		soa()
		denial(covers(other))
		denial(covers("*." + z.apex))
	} else if _, ok := s.noProof[name]; ok {
		m.Rcode = dns.RcodeNameError
		soa()
	} else if set := z.rrs[name][q.Qtype]; set != nil {
		m.Answer = withSigs(addSet(nil, set), name, q.Qtype)
	} else if set := z.rrs[name][dns.TypeCNAME]; set != nil {
		m.Answer = withSigs(addSet(nil, set), name, dns.TypeCNAME)
		// Followed, as a recursive resolver would.
		target := dns.CanonicalName(set[0].(*dns.CNAME).Target)
		if tz := s.zoneFor(target, q.Qtype); tz != nil && tz.rrs[target][q.Qtype] != nil {
			m.Answer = addSet(m.Answer, tz.rrs[target][q.Qtype])
			if do {
				m.Answer = append(m.Answer, tz.sigs[target][q.Qtype]...)
			}
		}
	} else if z.rrs[name] != nil {
		soa()
		denial(matches(name))
	} else if wc := "*." + strings.SplitN(name, ".", 2)[1]; z.rrs[wc][q.Qtype] != nil {
		for _, rr := range z.rrs[wc][q.Qtype] {
			c := dns.Copy(rr)
			c.Header().Name = q.Name
			m.Answer = append(m.Answer, c)
		}
		if do {
			for _, sig := range z.sigs[wc][q.Qtype] {
				c := dns.Copy(sig)
				c.Header().Name = q.Name
				m.Answer = append(m.Answer, c)
			}
		}
		denial(covers(name)) // the name asked (the next closer name, for NSEC3)
	} else {
		m.Rcode = dns.RcodeNameError
		soa()
		if z.nsec3 {
			denial(matches(z.apex))
			denial(covers(name))
			denial(covers("*." + z.apex))
		} else {
			denial(covers(name))
			denial(covers("*." + z.apex))
		}
	}
	_ = w.WriteMsg(m)
}

func startSignedServer(t *testing.T, zones ...*signedZone) *signedServer {
	t.Helper()
	s := &signedServer{zones: zones}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: l, Handler: s}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	s.addr = pc.LocalAddr().String()
	return s
}

// dnssecZones builds the test's tree: example.test (NSEC, the trust
// anchor) with a signed child secure.example.test (NSEC3), an unsigned
// child, a child whose DS names a key it does not have, and records
// whose signatures were tampered with, expired or stripped.
func dnssecZones(t *testing.T) (*signedServer, string) {
	secureZ := newZone(t, "secure.example.test.", true, true,
		"host.secure.example.test. 300 IN A 192.0.2.10")
	secureZ.finish(t)
	unsignedZ := newZone(t, "unsigned.example.test.", false, false,
		"host.unsigned.example.test. 300 IN A 192.0.2.20")
	wrongZ := newZone(t, "wrongds.example.test.", true, false,
		"host.wrongds.example.test. 300 IN A 192.0.2.40")
	wrongZ.finish(t)
	other, _ := genKey(t, "wrongds.example.test.", 257)
	parent := newZone(t, "example.test.", true, false,
		"www.example.test. 300 IN A 192.0.2.1",
		"mail.example.test. 300 IN A 192.0.2.6",
		"bad.example.test. 300 IN A 192.0.2.2",
		"expired.example.test. 300 IN A 192.0.2.3",
		"stripped.example.test. 300 IN A 192.0.2.4",
		"*.wild.example.test. 300 IN A 192.0.2.5",
		"wild.example.test. 300 IN TXT \"the wildcard's parent\"",
		"alias.example.test. 300 IN CNAME www.example.test.",
		"secure.example.test. 300 IN NS ns.secure.example.test.",
		"unsigned.example.test. 300 IN NS ns.unsigned.example.test.",
		"wrongds.example.test. 300 IN NS ns.wrongds.example.test.",
	)
	parent.put(secureZ.ds())
	parent.put(other.ToDS(dns.SHA256))
	parent.finish(t)
	// Tampered after signing; signed long ago; signature removed.
	parent.rrs["bad.example.test."][dns.TypeA][0].(*dns.A).A = net.ParseIP("192.0.2.66")
	now := time.Now()
	parent.sigs["expired.example.test."][dns.TypeA] = parent.sign(t, parent.rrs["expired.example.test."][dns.TypeA], now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	delete(parent.sigs["stripped.example.test."], dns.TypeA)
	otherZ := newZone(t, "other.test.", false, false, "host.other.test. 300 IN A 192.0.2.30")
	srv := startSignedServer(t, parent, secureZ, unsignedZ, wrongZ, otherZ)
	srv.noProof = map[string]string{"gone.example.test.": ""}
	srv.replayed = map[string]string{"mail.example.test.": "nope.example.test."}
	return srv, parent.ds().String()
}

func startValidating(t *testing.T, mod func(*config.DNS)) (string, *signedServer) {
	t.Helper()
	srv, anchor := dnssecZones(t)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.DNS.Upstreams = config.Strings{"udp://" + srv.addr}
		c.DNS.AllowPlain = true
		c.DNS.Listen = "127.0.0.1:0"
		c.DNS.DNSSEC.Validate = true
		c.DNS.DNSSEC.TrustAnchors = config.Strings{anchor}
		if mod != nil {
			mod(&c.DNS)
		}
	})
	return r.App.DNS().Addr("udp").String(), srv
}

func ask(t *testing.T, addr, name string, qtype uint16, edit func(*dns.Msg)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, true)
	if edit != nil {
		edit(m)
	}
	c := &dns.Client{Timeout: 5 * time.Second, Net: "tcp"}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}

func ede(r *dns.Msg) *dns.EDNS0_EDE {
	if o := r.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

// TestDNSSECValidation: with a trust anchor for a zone the test signed,
// Ops marks secure answers (AD), passes insecure ones without AD, and
// answers bogus ones SERVFAIL with an Extended DNS Error, whether the
// data was tampered with, its signature expired or stripped, or the
// child's DS names another key; proofs of non-existence are checked over
// NSEC and NSEC3.
func TestDNSSECValidation(t *testing.T) {
	addr, _ := startValidating(t, nil)
	cases := []struct {
		name   string
		qtype  uint16
		rcode  int
		ad     bool
		answer string // an A record's address, when one is expected
		why    string // in the EDE text of a bogus answer
	}{
		{"www.example.test.", dns.TypeA, dns.RcodeSuccess, true, "192.0.2.1", ""},
		{"mail.example.test.", dns.TypeA, dns.RcodeServerFailure, false, "", "without an NSEC record covering it"},
		{"gone.example.test.", dns.TypeA, dns.RcodeServerFailure, false, "", "without NSEC or NSEC3"},
		{"ftp.example.test.", dns.TypeA, dns.RcodeNameError, true, "", ""},
		{"alias.example.test.", dns.TypeA, dns.RcodeSuccess, true, "192.0.2.1", ""},
		{"x.wild.example.test.", dns.TypeA, dns.RcodeSuccess, true, "192.0.2.5", ""},
		{"nope.example.test.", dns.TypeA, dns.RcodeNameError, true, "", ""},
		{"www.example.test.", dns.TypeAAAA, dns.RcodeSuccess, true, "", ""},
		{"host.secure.example.test.", dns.TypeA, dns.RcodeSuccess, true, "192.0.2.10", ""},
		{"nope.secure.example.test.", dns.TypeA, dns.RcodeNameError, true, "", ""},
		{"host.secure.example.test.", dns.TypeTXT, dns.RcodeSuccess, true, "", ""},
		{"host.unsigned.example.test.", dns.TypeA, dns.RcodeSuccess, false, "192.0.2.20", ""},
		{"host.other.test.", dns.TypeA, dns.RcodeSuccess, false, "192.0.2.30", ""},
		{"bad.example.test.", dns.TypeA, dns.RcodeServerFailure, false, "", "does not verify"},
		{"expired.example.test.", dns.TypeA, dns.RcodeServerFailure, false, "", "not valid now"},
		{"stripped.example.test.", dns.TypeA, dns.RcodeServerFailure, false, "", "not signed"},
		{"host.wrongds.example.test.", dns.TypeA, dns.RcodeServerFailure, false, "", "wrongds.example.test"},
	}
	for _, c := range cases {
		t.Run(c.name+"/"+dns.TypeToString[c.qtype], func(t *testing.T) {
			r := ask(t, addr, c.name, c.qtype, nil)
			if r.Rcode != c.rcode || r.AuthenticatedData != c.ad {
				t.Fatalf("rcode %s AD %v, want %s AD %v\n%v", dns.RcodeToString[r.Rcode], r.AuthenticatedData, dns.RcodeToString[c.rcode], c.ad, r)
			}
			if c.answer != "" {
				found := false
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.A); ok && a.A.String() == c.answer {
						found = true
					}
				}
				if !found {
					t.Fatalf("no A %s in %v", c.answer, r.Answer)
				}
			}
			if c.why != "" {
				e := ede(r)
				if e == nil || e.InfoCode != dns.ExtendedErrorCodeDNSBogus || !strings.Contains(e.ExtraText, c.why) {
					t.Fatalf("EDE %v, want DNSSEC Bogus naming %q", e, c.why)
				}
			}
		})
	}

	// A client that did not set DO gets no signatures, and AD only when it
	// set AD; CD turns validation off for its query.
	plain := ask(t, addr, "www.example.test.", dns.TypeA, func(m *dns.Msg) { m.Extra = nil })
	for _, rr := range plain.Answer {
		if rr.Header().Rrtype == dns.TypeRRSIG {
			t.Fatalf("RRSIG to a client without DO: %v", plain.Answer)
		}
	}
	if plain.AuthenticatedData {
		t.Fatal("AD to a client that set neither DO nor AD")
	}
	if r := ask(t, addr, "www.example.test.", dns.TypeA, func(m *dns.Msg) { m.Extra = nil; m.AuthenticatedData = true }); !r.AuthenticatedData {
		t.Fatal("no AD to a client that set AD")
	}
	signed := ask(t, addr, "www.example.test.", dns.TypeA, nil)
	if n := len(signed.Answer); n != 2 {
		t.Fatalf("a DO client wants the A and its RRSIG, got %v", signed.Answer)
	}
	cd := ask(t, addr, "bad.example.test.", dns.TypeA, func(m *dns.Msg) { m.CheckingDisabled = true })
	if cd.Rcode != dns.RcodeSuccess || len(cd.Answer) == 0 {
		t.Fatalf("CD set: want the data as it is, got %v", cd)
	}
}

// TestDNSSECNegativeTrustAnchor: a domain under dns.dnssec.insecure, and
// conditionally forwarded domains, are answered without validation.
func TestDNSSECNegativeTrustAnchor(t *testing.T) {
	var up string
	addr, _ := startValidating(t, func(d *config.DNS) {
		d.DNSSEC.Insecure = config.Strings{"bad.example.test"}
		up = d.Upstreams[0]
		d.Forward = []config.DNSForward{{Domain: "expired.example.test", Upstreams: config.Strings{up}}}
	})
	for _, n := range []string{"bad.example.test.", "expired.example.test."} {
		if r := ask(t, addr, n, dns.TypeA, nil); r.Rcode != dns.RcodeSuccess || r.AuthenticatedData || len(r.Answer) == 0 {
			t.Fatalf("%s: want an unvalidated answer, got %v", n, r)
		}
	}
	if r := ask(t, addr, "stripped.example.test.", dns.TypeA, nil); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("stripped: still bogus outside the negative anchors, got %v", r)
	}
}
