package dnsd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// DNSSEC validation (dns.dnssec.validate; RFC 4033-4035, NSEC3 RFC 5155,
// clarifications RFC 6840). Ops asks its upstreams with DO and CD set, so
// it sees signatures and bogus data alike and decides itself:
//
//   - secure: every RRset of the answer, and the proof that what was asked
//     does not exist, verifies up a chain of DS and DNSKEY records to a
//     trust anchor. The answer gets the AD bit.
//   - insecure: no trust anchor covers the name, a negative trust anchor
//     does, or the chain proves a delegation unsigned (no DS). The answer
//     goes out as it came, without AD.
//   - bogus: anything else (a signature that does not verify or has
//     expired, signatures stripped from a signed zone, a missing proof of
//     non-existence). The client gets SERVFAIL with an Extended DNS Error
//     (RFC 8914, 6 "DNSSEC Bogus") saying why, and the answer is not cached.
//
// Keys and delegation answers are cached by the validator (their TTL,
// capped at validatorMaxTTL), so a chain costs its queries once.

type security int

const (
	insecure security = iota
	secure
	bogus
)

func (s security) String() string {
	return [...]string{"insecure", "secure", "bogus"}[s]
}

// verdict is a validation's result: the state, why (for a bogus answer's
// EDE text), and for a proven absence of DS records whether the name was
// a delegation (an unsigned child zone) or an opt-out span covered it.
type verdict struct {
	state      security
	why        string
	delegation bool
	optOut     bool
}

func bogusf(format string, a ...any) verdict {
	return verdict{state: bogus, why: fmt.Sprintf(format, a...)}
}

// rootAnchors are the root zone's key-signing keys as DS records (KSK-2017
// and KSK-2024, as IANA publishes them in root-anchors.xml and Debian's
// dns-root-data ships them).
var rootAnchors = []string{
	". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
	". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
}

const (
	validatorMaxTTL = time.Hour
	validatorMinTTL = 5 * time.Second
	// maxNSEC3Iterations: more iterations than this make an NSEC3 proof
	// insecure instead of costing hashes (RFC 9276 3.2, as Unbound and
	// BIND do).
	maxNSEC3Iterations = 150
	validatorEntries   = 10_000
)

// validator checks answers; ask sends a query (DO and CD set) upstream.
type validator struct {
	anchors  map[string][]dns.RR // zone -> DS or DNSKEY records
	negative []string            // domains not validated
	ask      func(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)
	now      func() time.Time

	mu      sync.Mutex
	answers map[askKey]askEntry // DS and DNSKEY answers
	keys    map[string]keyEntry // zone -> its verified keys
	flight  singleflight.Group
}

type askKey struct {
	name  string
	qtype uint16
}

type askEntry struct {
	m       *dns.Msg
	expires time.Time
}

type keyEntry struct {
	keys    []*dns.DNSKEY
	v       verdict
	expires time.Time
}

// newValidator reads the trust anchors (DS or DNSKEY records in zone-file
// form; none: the root's) and the negative trust anchors.
func newValidator(anchors, negative []string, ask func(context.Context, string, uint16) (*dns.Msg, error)) (*validator, error) {
	v := &validator{anchors: map[string][]dns.RR{}, ask: ask, now: time.Now,
		answers: map[askKey]askEntry{}, keys: map[string]keyEntry{}}
	if len(anchors) == 0 {
		anchors = rootAnchors
	}
	for _, a := range anchors {
		rr, err := dns.NewRR(a)
		if err != nil || rr == nil {
			return nil, fmt.Errorf("dns.dnssec.trust_anchors: %q: want a DS or DNSKEY record (e.g. %q): %v", a, rootAnchors[0], err)
		}
		switch rr.(type) {
		case *dns.DS, *dns.DNSKEY:
		default:
			return nil, fmt.Errorf("dns.dnssec.trust_anchors: %q is a %s record; want DS or DNSKEY", a, dns.TypeToString[rr.Header().Rrtype])
		}
		zone := dns.CanonicalName(rr.Header().Name)
		v.anchors[zone] = append(v.anchors[zone], rr)
	}
	for _, n := range negative {
		v.negative = append(v.negative, dns.CanonicalName(n))
	}
	return v, nil
}

// anchorFor is the closest trust anchor above or at name, "" when none.
func (v *validator) anchorFor(name string) string {
	best := ""
	for z := range v.anchors {
		if dns.IsSubDomain(z, name) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

func (v *validator) untrusted(name string) bool {
	for _, n := range v.negative {
		if dns.IsSubDomain(n, name) {
			return true
		}
	}
	return false
}

// check validates r, the answer to (qname, qtype).
func (v *validator) check(ctx context.Context, qname string, qtype uint16, r *dns.Msg) verdict {
	qname = dns.CanonicalName(qname)
	if v.untrusted(qname) || v.anchorFor(qname) == "" {
		return verdict{state: insecure}
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return verdict{state: insecure} // SERVFAIL, REFUSED: nothing to validate
	}
	return v.checkMsg(ctx, qname, qtype, r, 0)
}

// maxDepth bounds the chain (each level one zone cut).
const maxDepth = 24

func (v *validator) checkMsg(ctx context.Context, qname string, qtype uint16, r *dns.Msg, depth int) verdict {
	if depth > maxDepth {
		return bogusf("chain of trust deeper than %d zones", maxDepth)
	}
	result := verdict{state: secure}
	weaken := func(x verdict) bool { // false: stop, bogus
		if x.state == bogus {
			result = x
			return false
		}
		if x.state == insecure {
			result.state = insecure
		}
		return true
	}
	// The answer's RRsets, following CNAMEs from qname.
	sname := qname
	answered := false
	var wildcards []string // owners of RRsets expanded from a wildcard
	for _, set := range rrsets(r.Answer) {
		owner := dns.CanonicalName(set.rrs[0].Header().Name)
		t := set.rrs[0].Header().Rrtype
		if t == dns.TypeCNAME && len(set.sigs) == 0 && dnameCovers(r.Answer, owner) {
			// Synthesised from a DNAME, which carries the signature.
		} else {
			x, wild := v.checkSet(ctx, set, depth)
			if !weaken(x) {
				return result
			}
			if wild && x.state == secure {
				wildcards = append(wildcards, owner)
			}
		}
		if owner == sname {
			if t == dns.TypeCNAME && qtype != dns.TypeCNAME {
				sname = dns.CanonicalName(set.rrs[0].(*dns.CNAME).Target)
			} else if t == qtype || qtype == dns.TypeANY {
				answered = true
			}
		}
	}
	if result.state == insecure {
		return result
	}
	// The authority section: SOA, NSEC and NSEC3 RRsets must verify.
	var nsec []*dns.NSEC
	var nsec3 []*dns.NSEC3
	signed := false
	for _, set := range rrsets(r.Ns) {
		switch set.rrs[0].Header().Rrtype {
		case dns.TypeNSEC, dns.TypeNSEC3, dns.TypeSOA:
		default:
			continue // NS of a referral, not signed by the parent
		}
		if len(set.sigs) == 0 {
			continue
		}
		signed = true
		x, _ := v.checkSet(ctx, set, depth)
		if !weaken(x) {
			return result
		}
		for _, rr := range set.rrs {
			switch n := rr.(type) {
			case *dns.NSEC:
				nsec = append(nsec, n)
			case *dns.NSEC3:
				nsec3 = append(nsec3, n)
			}
		}
	}
	if result.state == insecure {
		return result
	}
	for _, w := range wildcards {
		// An expanded wildcard is secure only when the name asked for does
		// not exist (RFC 4035 5.3.4).
		if !nsecCoversAny(nsec, w) && !nsec3NextCloserCovered(nsec3, w, wildcardSigLabels(r.Answer, w)) {
			return bogusf("%s answered from a wildcard without proof that it does not exist", w)
		}
	}
	if answered {
		return result
	}
	// Nothing for sname: the proof of its absence.
	if !signed {
		z := v.zoneOf(ctx, sname, depth)
		if z.state == secure {
			return bogusf("no signed proof that %s %s does not exist", sname, dns.TypeToString[qtype])
		}
		return z
	}
	if r.Rcode == dns.RcodeNameError {
		return denyName(sname, nsec, nsec3)
	}
	return denyType(sname, qtype, nsec, nsec3)
}

type rrset struct {
	rrs  []dns.RR
	sigs []*dns.RRSIG
}

// rrsets groups a section into RRsets with their signatures, in order.
func rrsets(sec []dns.RR) []*rrset {
	type key struct {
		name string
		t    uint16
	}
	var out []*rrset
	by := map[key]*rrset{}
	for _, rr := range sec {
		h := rr.Header()
		k := key{dns.CanonicalName(h.Name), h.Rrtype}
		if sig, ok := rr.(*dns.RRSIG); ok {
			k.t = sig.TypeCovered
		}
		s := by[k]
		if s == nil {
			s = &rrset{}
			by[k] = s
			out = append(out, s)
		}
		if sig, ok := rr.(*dns.RRSIG); ok {
			s.sigs = append(s.sigs, sig)
		} else {
			s.rrs = append(s.rrs, rr)
		}
	}
	// Signatures without their RRset prove nothing.
	keep := out[:0]
	for _, s := range out {
		if len(s.rrs) > 0 {
			keep = append(keep, s)
		}
	}
	return keep
}

func dnameCovers(answer []dns.RR, owner string) bool {
	for _, rr := range answer {
		if d, ok := rr.(*dns.DNAME); ok && dns.IsSubDomain(dns.CanonicalName(d.Hdr.Name), owner) && dns.CanonicalName(d.Hdr.Name) != owner {
			return true
		}
	}
	return false
}

// checkSet verifies one RRset: a signature by a verified key of its
// zone, valid now. wild: the RRset was expanded from a wildcard.
func (v *validator) checkSet(ctx context.Context, set *rrset, depth int) (verdict, bool) {
	h := set.rrs[0].Header()
	owner := dns.CanonicalName(h.Name)
	if v.untrusted(owner) || v.anchorFor(owner) == "" {
		return verdict{state: insecure}, false
	}
	if len(set.sigs) == 0 {
		z := v.zoneOf(ctx, owner, depth)
		if z.state == secure {
			return bogusf("%s %s is not signed, in a signed zone", owner, dns.TypeToString[h.Rrtype]), false
		}
		return z, false
	}
	last := bogusf("no signature of %s %s verifies", owner, dns.TypeToString[h.Rrtype])
	now := v.now()
	for _, sig := range set.sigs {
		signer := dns.CanonicalName(sig.SignerName)
		if !dns.IsSubDomain(signer, owner) || h.Rrtype == dns.TypeDS && signer == owner && owner != "." {
			last = bogusf("%s %s is signed by %s, which is not its zone", owner, dns.TypeToString[h.Rrtype], signer)
			continue
		}
		keys, kv := v.zoneKeys(ctx, signer, depth+1)
		if kv.state != secure {
			if kv.state == insecure {
				return kv, false
			}
			last = kv
			continue
		}
		if !sig.ValidityPeriod(now) {
			last = bogusf("the signature of %s %s is not valid now (valid %s to %s)", owner, dns.TypeToString[h.Rrtype],
				dns.TimeToString(sig.Inception), dns.TimeToString(sig.Expiration))
			continue
		}
		for _, k := range keys {
			if k.KeyTag() == sig.KeyTag && k.Algorithm == sig.Algorithm && sig.Verify(k, set.rrs) == nil {
				return verdict{state: secure}, int(sig.Labels) < dns.CountLabel(owner)
			}
		}
		last = bogusf("the signature of %s %s by key %d does not verify", owner, dns.TypeToString[h.Rrtype], sig.KeyTag)
	}
	return last, false
}

// zoneKeys are zone's DNSKEYs, verified: by the trust anchor, or by a DS
// RRset the parent signed. An insecure verdict means the zone sits below
// an unsigned delegation.
func (v *validator) zoneKeys(ctx context.Context, zone string, depth int) ([]*dns.DNSKEY, verdict) {
	if depth > maxDepth {
		return nil, bogusf("chain of trust deeper than %d zones", maxDepth)
	}
	for c, _ := ctx.Value(chainKey{}).(*chain); c != nil; c = c.up {
		if c.zone == zone {
			return nil, bogusf("the chain of trust of %s loops", zone)
		}
	}
	v.mu.Lock()
	e, ok := v.keys[zone]
	v.mu.Unlock()
	if ok && v.now().Before(e.expires) {
		return e.keys, e.v
	}
	up, _ := ctx.Value(chainKey{}).(*chain)
	inner := context.WithValue(ctx, chainKey{}, &chain{zone: zone, up: up})
	res, _, _ := v.flight.Do("keys/"+zone, func() (any, error) {
		keys, x, ttl := v.fetchKeys(inner, zone, depth)
		if ctx.Err() == nil { // a cancelled query's failure is not the zone's
			v.mu.Lock()
			if len(v.keys) >= validatorEntries {
				clear(v.keys)
			}
			v.keys[zone] = keyEntry{keys: keys, v: x, expires: v.now().Add(ttl)}
			v.mu.Unlock()
		}
		return keyEntry{keys: keys, v: x}, nil
	})
	k := res.(keyEntry)
	return k.keys, k.v
}

// chain is the zones whose keys a validation is fetching, innermost
// first: a zone met again is a loop (bogus), never a wait on itself.
type chain struct {
	zone string
	up   *chain
}

type chainKey struct{}

func (v *validator) fetchKeys(ctx context.Context, zone string, depth int) ([]*dns.DNSKEY, verdict, time.Duration) {
	failTTL := validatorMinTTL
	var trusted []dns.RR // DS or DNSKEY records the zone's keys must match
	ttl := validatorMaxTTL
	if anchor, ok := v.anchors[zone]; ok {
		trusted = anchor
	} else {
		ds, err := v.lookup(ctx, zone, dns.TypeDS)
		if err != nil {
			return nil, bogusf("DS %s: %v", zone, err), failTTL
		}
		x := v.checkMsg(ctx, zone, dns.TypeDS, ds, depth)
		if x.state != secure {
			return nil, x, failTTL
		}
		for _, rr := range ds.Answer {
			if d, ok := rr.(*dns.DS); ok && dns.CanonicalName(d.Hdr.Name) == zone {
				trusted = append(trusted, d)
				ttl = min(ttl, time.Duration(d.Hdr.Ttl)*time.Second)
			}
		}
		if len(trusted) == 0 {
			// Proven absent: an unsigned delegation.
			return nil, verdict{state: insecure}, ttlOf(ds)
		}
	}
	if !anyUsable(trusted) {
		// RFC 4035 5.2: DS records only of algorithms or digests we do not
		// know make the zone insecure.
		return nil, verdict{state: insecure}, ttl
	}
	r, err := v.lookup(ctx, zone, dns.TypeDNSKEY)
	if err != nil {
		return nil, bogusf("DNSKEY %s: %v", zone, err), failTTL
	}
	var keys []*dns.DNSKEY
	var sigs []*dns.RRSIG
	var set []dns.RR
	for _, rr := range r.Answer {
		switch k := rr.(type) {
		case *dns.DNSKEY:
			if dns.CanonicalName(k.Hdr.Name) == zone {
				keys = append(keys, k)
				set = append(set, k)
				ttl = min(ttl, time.Duration(k.Hdr.Ttl)*time.Second)
			}
		case *dns.RRSIG:
			if k.TypeCovered == dns.TypeDNSKEY && dns.CanonicalName(k.Hdr.Name) == zone {
				sigs = append(sigs, k)
			}
		}
	}
	if len(keys) == 0 {
		return nil, bogusf("%s has no DNSKEY records", zone), failTTL
	}
	now := v.now()
	for _, k := range keys {
		if k.Flags&dns.ZONE == 0 || k.Flags&dns.REVOKE != 0 || !matchesAnchor(k, trusted) {
			continue
		}
		for _, sig := range sigs {
			if sig.KeyTag == k.KeyTag() && sig.Algorithm == k.Algorithm && sig.ValidityPeriod(now) && sig.Verify(k, set) == nil {
				return keys, verdict{state: secure}, max(ttl, validatorMinTTL)
			}
		}
	}
	return nil, bogusf("no DNSKEY of %s that its DS or trust anchor names signs its key set", zone), failTTL
}

var knownDigests = map[uint8]bool{dns.SHA1: true, dns.SHA256: true, dns.SHA384: true}
var knownAlgorithms = map[uint8]bool{dns.RSASHA1: true, dns.RSASHA1NSEC3SHA1: true, dns.RSASHA256: true, dns.RSASHA512: true,
	dns.ECDSAP256SHA256: true, dns.ECDSAP384SHA384: true, dns.ED25519: true}

func anyUsable(trusted []dns.RR) bool {
	for _, rr := range trusted {
		switch t := rr.(type) {
		case *dns.DS:
			if knownDigests[t.DigestType] && knownAlgorithms[t.Algorithm] {
				return true
			}
		case *dns.DNSKEY:
			if knownAlgorithms[t.Algorithm] {
				return true
			}
		}
	}
	return false
}

func matchesAnchor(k *dns.DNSKEY, trusted []dns.RR) bool {
	for _, rr := range trusted {
		switch t := rr.(type) {
		case *dns.DS:
			if t.KeyTag != k.KeyTag() || t.Algorithm != k.Algorithm || !knownDigests[t.DigestType] {
				continue
			}
			if d := k.ToDS(t.DigestType); d != nil && strings.EqualFold(d.Digest, t.Digest) {
				return true
			}
		case *dns.DNSKEY:
			if t.Algorithm == k.Algorithm && t.Flags == k.Flags && t.PublicKey == k.PublicKey {
				return true
			}
		}
	}
	return false
}

// zoneOf walks from the trust anchor down to name, asking for DS records
// at each label: secure when name is in a signed zone (so unsigned data
// there is bogus), insecure when a delegation on the way is proven
// unsigned.
func (v *validator) zoneOf(ctx context.Context, name string, depth int) verdict {
	anchor := v.anchorFor(name)
	if anchor == "" || v.untrusted(name) {
		return verdict{state: insecure}
	}
	if _, x := v.zoneKeys(ctx, anchor, depth+1); x.state != secure {
		return x
	}
	labels := dns.SplitDomainName(name)
	for i := len(labels) - dns.CountLabel(anchor) - 1; i >= 0; i-- {
		child := dns.Fqdn(strings.Join(labels[i:], "."))
		r, err := v.lookup(ctx, child, dns.TypeDS)
		if err != nil {
			return bogusf("DS %s: %v", child, err)
		}
		hasDS := false
		for _, rr := range r.Answer {
			if rr.Header().Rrtype == dns.TypeDS {
				hasDS = true
			}
		}
		if hasDS {
			if _, x := v.zoneKeys(ctx, child, depth+1); x.state != secure {
				return x
			}
			continue
		}
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			return bogusf("DS %s: %s", child, dns.RcodeToString[r.Rcode])
		}
		x := v.checkDenial(ctx, child, dns.TypeDS, r, depth)
		switch {
		case x.state != secure:
			return x
		case x.delegation || x.optOut:
			return verdict{state: insecure}
		case r.Rcode == dns.RcodeNameError:
			return verdict{state: secure} // nothing exists below: unsigned data there is forged
		}
	}
	return verdict{state: secure}
}

// checkDenial validates a negative answer whose zone is known to be
// signed: unsigned, it is bogus (no walk again).
func (v *validator) checkDenial(ctx context.Context, name string, qtype uint16, r *dns.Msg, depth int) verdict {
	for _, rr := range r.Ns {
		if _, ok := rr.(*dns.RRSIG); ok {
			return v.checkMsg(ctx, name, qtype, r, depth+1)
		}
	}
	return bogusf("no signed proof that %s %s does not exist", name, dns.TypeToString[qtype])
}

// lookup asks upstream (DO, CD), caching DS and DNSKEY answers.
func (v *validator) lookup(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	k := askKey{name, qtype}
	v.mu.Lock()
	e, ok := v.answers[k]
	v.mu.Unlock()
	if ok && v.now().Before(e.expires) {
		return e.m, nil
	}
	res, err, _ := v.flight.Do(fmt.Sprintf("ask/%s/%d", name, qtype), func() (any, error) {
		r, err := v.ask(ctx, name, qtype)
		if err != nil {
			return nil, err
		}
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			return nil, fmt.Errorf("%s", dns.RcodeToString[r.Rcode])
		}
		v.mu.Lock()
		if len(v.answers) >= validatorEntries {
			clear(v.answers)
		}
		v.answers[k] = askEntry{m: r, expires: v.now().Add(ttlOf(r))}
		v.mu.Unlock()
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	return res.(*dns.Msg), nil
}

// ttlOf is how long a validator answer is kept: its lowest TTL, within
// validatorMinTTL and validatorMaxTTL.
func ttlOf(m *dns.Msg) time.Duration {
	low := uint32(validatorMaxTTL / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			low = min(low, rr.Header().Ttl)
		}
	}
	return max(time.Duration(low)*time.Second, validatorMinTTL)
}

// --- proofs of non-existence ---

// canonicalCompare orders names as RFC 4034 6.1 does: by their labels
// from the right, each compared as lower-case bytes.
func canonicalCompare(a, b string) int {
	la, lb := dns.SplitDomainName(strings.ToLower(a)), dns.SplitDomainName(strings.ToLower(b))
	for i, j := len(la)-1, len(lb)-1; i >= 0 || j >= 0; i, j = i-1, j-1 {
		switch {
		case i < 0:
			return -1
		case j < 0:
			return 1
		}
		if c := strings.Compare(la[i], lb[j]); c != 0 {
			return c
		}
	}
	return 0
}

// nsecCovers: name falls strictly between the NSEC's owner and next name
// (the last NSEC of a zone wraps to its apex).
func nsecCovers(n *dns.NSEC, name string) bool {
	owner, next := n.Hdr.Name, n.NextDomain
	if canonicalCompare(owner, next) < 0 {
		return canonicalCompare(owner, name) < 0 && canonicalCompare(name, next) < 0
	}
	return canonicalCompare(owner, name) < 0 || canonicalCompare(name, next) < 0
}

func nsecCoversAny(ns []*dns.NSEC, name string) bool {
	for _, n := range ns {
		if nsecCovers(n, name) {
			return true
		}
	}
	return false
}

func hasType(bitmap []uint16, t uint16) bool {
	for _, b := range bitmap {
		if b == t {
			return true
		}
	}
	return false
}

// commonLabels counts the labels a and b share from the right.
func commonLabels(a, b string) int { return dns.CompareDomainName(a, b) }

// ancestor is name cut to its last n labels.
func ancestor(name string, n int) string {
	labels := dns.SplitDomainName(name)
	if n <= 0 {
		return "."
	}
	return dns.Fqdn(strings.Join(labels[len(labels)-n:], "."))
}

var errNoProof = errors.New("no proof")

// denyName checks the proof that name does not exist (NXDOMAIN).
func denyName(name string, nsec []*dns.NSEC, nsec3 []*dns.NSEC3) verdict {
	if len(nsec) > 0 {
		for _, n := range nsec {
			if !nsecCovers(n, name) {
				continue
			}
			ce := ancestor(name, max(commonLabels(name, n.Hdr.Name), commonLabels(name, n.NextDomain)))
			if wc := "*." + ce; nsecCoversAny(nsec, wc) || ce == "." && nsecCoversAny(nsec, "*.") {
				return verdict{state: secure}
			}
			return bogusf("NXDOMAIN for %s without proof that *.%s does not exist", name, ce)
		}
		return bogusf("NXDOMAIN for %s without an NSEC record covering it", name)
	}
	if len(nsec3) > 0 {
		if tooCostly(nsec3) {
			return verdict{state: insecure}
		}
		ce, _, optOut, err := closestEncloser(nsec3, name)
		if err != nil {
			return bogusf("NXDOMAIN for %s: %v", name, err)
		}
		if !nsec3Covers(nsec3, wildcardOf(ce)) {
			return bogusf("NXDOMAIN for %s without proof that *.%s does not exist", name, ce)
		}
		return verdict{state: secure, optOut: optOut}
	}
	return bogusf("NXDOMAIN for %s without NSEC or NSEC3 records", name)
}

// denyType checks the proof that name has no qtype records (NODATA).
func denyType(name string, qtype uint16, nsec []*dns.NSEC, nsec3 []*dns.NSEC3) verdict {
	tname := dns.TypeToString[qtype]
	if len(nsec) > 0 {
		for _, n := range nsec {
			if dns.CanonicalName(n.Hdr.Name) == name {
				if hasType(n.TypeBitMap, qtype) || hasType(n.TypeBitMap, dns.TypeCNAME) {
					return bogusf("NODATA for %s %s, but its NSEC lists the type", name, tname)
				}
				// A delegation: NS without SOA at the name (for a DS query,
				// the parent's NSEC proves the child unsigned).
				deleg := hasType(n.TypeBitMap, dns.TypeNS) && !hasType(n.TypeBitMap, dns.TypeSOA)
				return verdict{state: secure, delegation: deleg}
			}
		}
		for _, n := range nsec {
			// An empty non-terminal: a name below it exists.
			if nsecCovers(n, name) && dns.IsSubDomain(name, dns.CanonicalName(n.NextDomain)) {
				return verdict{state: secure}
			}
		}
		for _, n := range nsec {
			// Wildcard NODATA: name does not exist and the wildcard that
			// would match it lacks the type.
			if !nsecCovers(n, name) {
				continue
			}
			ce := ancestor(name, max(commonLabels(name, n.Hdr.Name), commonLabels(name, n.NextDomain)))
			for _, w := range nsec {
				if dns.CanonicalName(w.Hdr.Name) == wildcardOf(ce) && !hasType(w.TypeBitMap, qtype) && !hasType(w.TypeBitMap, dns.TypeCNAME) {
					return verdict{state: secure}
				}
			}
		}
		return bogusf("NODATA for %s %s without an NSEC record proving it", name, tname)
	}
	if len(nsec3) > 0 {
		if tooCostly(nsec3) {
			return verdict{state: insecure}
		}
		for _, n := range nsec3 {
			if n.Match(name) {
				if hasType(n.TypeBitMap, qtype) || hasType(n.TypeBitMap, dns.TypeCNAME) {
					return bogusf("NODATA for %s %s, but its NSEC3 lists the type", name, tname)
				}
				deleg := hasType(n.TypeBitMap, dns.TypeNS) && !hasType(n.TypeBitMap, dns.TypeSOA)
				return verdict{state: secure, delegation: deleg}
			}
		}
		// No NSEC3 matches: for DS, an opt-out span may cover the name
		// (an unsigned delegation, RFC 5155 8.6); otherwise a wildcard
		// NODATA (8.7).
		ce, _, optOut, err := closestEncloser(nsec3, name)
		if err != nil {
			return bogusf("NODATA for %s %s: %v", name, tname, err)
		}
		if qtype == dns.TypeDS && optOut {
			return verdict{state: secure, optOut: true}
		}
		for _, n := range nsec3 {
			if n.Match(wildcardOf(ce)) && !hasType(n.TypeBitMap, qtype) && !hasType(n.TypeBitMap, dns.TypeCNAME) {
				return verdict{state: secure}
			}
		}
		return bogusf("NODATA for %s %s without an NSEC3 record proving it", name, tname)
	}
	return bogusf("NODATA for %s %s without NSEC or NSEC3 records", name, tname)
}

func wildcardOf(ce string) string {
	if ce == "." {
		return "*."
	}
	return "*." + ce
}

func tooCostly(ns []*dns.NSEC3) bool {
	for _, n := range ns {
		if n.Iterations > maxNSEC3Iterations || n.Hash != dns.SHA1 {
			return true
		}
	}
	return false
}

func nsec3Covers(ns []*dns.NSEC3, name string) bool {
	for _, n := range ns {
		if n.Cover(name) {
			return true
		}
	}
	return false
}

// closestEncloser finds the RFC 5155 7.2.1 proof for name: the longest
// existing ancestor (an NSEC3 matches it) and the next closer name below
// it (an NSEC3 covers it). optOut: the covering NSEC3 has the opt-out
// flag.
func closestEncloser(ns []*dns.NSEC3, name string) (ce, nextCloser string, optOut bool, err error) {
	labels := dns.CountLabel(name)
	for n := labels - 1; n >= 0; n-- {
		cand := ancestor(name, n)
		matched := false
		for _, x := range ns {
			if x.Match(cand) {
				matched = true
				break
			}
		}
		if !matched {
			continue
		}
		nc := ancestor(name, n+1)
		for _, x := range ns {
			if x.Cover(nc) {
				return cand, nc, x.Flags&1 == 1, nil
			}
		}
		return "", "", false, fmt.Errorf("no NSEC3 record covers the next closer name %s", nc)
	}
	return "", "", false, errNoProof
}

// nsec3NextCloserCovered: for an answer expanded from a wildcard whose
// signature has sigLabels labels, an NSEC3 covers the next closer name.
func nsec3NextCloserCovered(ns []*dns.NSEC3, owner string, sigLabels int) bool {
	if sigLabels < 0 {
		return false
	}
	return nsec3Covers(ns, ancestor(owner, sigLabels+1))
}

// wildcardSigLabels is the Labels field of the signature over owner's
// RRset, -1 when none.
func wildcardSigLabels(answer []dns.RR, owner string) int {
	for _, rr := range answer {
		if s, ok := rr.(*dns.RRSIG); ok && dns.CanonicalName(s.Hdr.Name) == owner {
			return int(s.Labels)
		}
	}
	return -1
}
