package proxy

import (
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/canon"
	"github.com/opsgraph/ops/internal/config"
)

// acl is a route's compiled rule list.
type acl struct {
	deny  bool // default action
	rules []aclRule
}

type aclRule struct {
	index   int
	deny    bool
	paths   []*regexp.Regexp
	methods []string
	cidrs   []netip.Prefix
	users   []string
	groups  []string
	from    int // minutes after midnight UTC; -1 for no window
	to      int
	hname   string
	hvalue  string
}

// globRE compiles a path glob: * within a segment, ** across segments.
// A glob is put in canonical form first (it is matched against canonical
// paths), and a final /** also matches the prefix itself: /admin/**
// covers /admin, or a rule meant for a directory would leave its index
// open.
func globRE(g string) *regexp.Regexp {
	if c, err := canon.Path(g, canon.Options{KeepEncodedSlash: true}); err == nil {
		g = c
	}
	var b strings.Builder
	b.WriteString("^")
	tail := ""
	if rest, ok := strings.CutSuffix(g, "/**"); ok {
		g, tail = rest, "(/.*)?"
	}
	for i := 0; i < len(g); i++ {
		switch {
		case strings.HasPrefix(g[i:], "**"):
			b.WriteString(".*")
			i++
		case g[i] == '*':
			b.WriteString("[^/]*")
		case g[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(g[i : i+1]))
		}
	}
	b.WriteString(tail + "$")
	return regexp.MustCompile(b.String())
}

func compileACL(c config.ACL) *acl {
	a := &acl{deny: c.Default == "deny"}
	for i, r := range c.Rules {
		cr := aclRule{index: i, deny: r.Action == "deny", from: -1, users: r.Users, groups: r.Groups}
		for _, p := range r.Paths {
			cr.paths = append(cr.paths, globRE(p))
		}
		for _, m := range r.Methods {
			cr.methods = append(cr.methods, strings.ToUpper(m))
		}
		for _, c := range r.CIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				cr.cidrs = append(cr.cidrs, p.Masked())
			} else if a, err := netip.ParseAddr(c); err == nil {
				cr.cidrs = append(cr.cidrs, netip.PrefixFrom(a, a.BitLen()))
			}
		}
		if r.Time != "" {
			cr.from, cr.to = clock(r.Time[:5]), clock(r.Time[6:])
		}
		if r.Header != "" {
			n, v, _ := strings.Cut(r.Header, ":")
			cr.hname, cr.hvalue = strings.TrimSpace(n), strings.TrimSpace(v)
		}
		a.rules = append(a.rules, cr)
	}
	return a
}

func clock(hhmm string) int {
	return int(hhmm[0]-'0')*600 + int(hhmm[1]-'0')*60 + int(hhmm[3]-'0')*10 + int(hhmm[4]-'0')
}

// subject is what ACL rules look at.
type subject struct {
	method string
	path   string // canonical
	alt    string // the path as a permissive upstream reads it, when that differs
	ip     netip.Addr
	user   string
	groups []string
	header http.Header
	now    time.Time
}

// decide returns whether the request is allowed and the index of the rule
// that decided (-1 for the default). With an alternative reading of the
// path, both readings must be allowed.
func (a *acl) decide(s subject) (bool, int) {
	ok, rule := a.decide1(s)
	if ok && s.alt != "" {
		s.path, s.alt = s.alt, ""
		if ok2, rule2 := a.decide1(s); !ok2 {
			return false, rule2
		}
	}
	return ok, rule
}

func (a *acl) decide1(s subject) (bool, int) {
	for _, r := range a.rules {
		if r.matches(s) {
			return !r.deny, r.index
		}
	}
	return !a.deny, -1
}

func (r *aclRule) matches(s subject) bool {
	if len(r.paths) > 0 && !slices.ContainsFunc(r.paths, func(re *regexp.Regexp) bool { return re.MatchString(s.path) }) {
		return false
	}
	if len(r.methods) > 0 && !slices.Contains(r.methods, s.method) {
		return false
	}
	if len(r.cidrs) > 0 && !slices.ContainsFunc(r.cidrs, func(p netip.Prefix) bool { return s.ip.IsValid() && p.Contains(s.ip) }) {
		return false
	}
	if len(r.users) > 0 && !slices.Contains(r.users, s.user) {
		return false
	}
	if len(r.groups) > 0 && !slices.ContainsFunc(r.groups, func(g string) bool {
		return slices.ContainsFunc(s.groups, func(h string) bool { return strings.EqualFold(g, h) })
	}) {
		return false
	}
	if r.from >= 0 {
		m := s.now.UTC().Hour()*60 + s.now.UTC().Minute()
		in := m >= r.from && m < r.to
		if r.from > r.to { // a window across midnight, 22:00-06:00
			in = m >= r.from || m < r.to
		}
		if !in {
			return false
		}
	}
	if r.hname != "" {
		v := s.header.Get(r.hname)
		if v == "" || (r.hvalue != "*" && v != r.hvalue) {
			return false
		}
	}
	return true
}
