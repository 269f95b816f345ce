package identity

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/opsgraph/ops/internal/config"
)

var _ PasswordProvider = (*LDAP)(nil)

const (
	// maxUserLen bounds what reaches the directory; no real login is longer.
	maxUserLen = 256
	// defaultGroupFilter is config's default group_filter. With
	// nested_groups it is swapped for the in-chain rule; a filter the
	// operator wrote is used as written.
	defaultGroupFilter = "(member={dn})"
	// inChainFilter is Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: one
	// search returns every group the DN is in, directly or through others.
	inChainFilter = "(member:1.2.840.113556.1.4.1941:={dn})"
	// maxNesting bounds the group-of-group walk for directories without the
	// in-chain rule (OpenLDAP).
	maxNesting = 10
	// orChunk caps how many group DNs one walk search ORs together.
	orChunk = 50
)

// loginAttrRE finds the attribute the login name is matched against in a
// user filter, e.g. uid in (uid={user}) or sAMAccountName in AD filters.
var loginAttrRE = regexp.MustCompile(`\(([A-Za-z][A-Za-z0-9-]*)=\{user\}\)`)

// LDAP checks passwords against OpenLDAP or Active Directory: it searches
// for the user as a service account, then binds as the user. Idle
// connections stay bound as the service account in a small pool.
type LDAP struct {
	cfg         config.LDAP
	log         *slog.Logger
	url         string
	addr        string
	ldaps       bool
	timeout     time.Duration
	timeLimit   int // server-side search limit, whole seconds
	tls         *tls.Config
	loginAttr   string
	groupFilter string
	inChain     bool

	mu     sync.Mutex // guards closed and sends on idle, so Close cannot race a put
	closed bool
	idle   chan *conn
}

// conn keeps the socket under go-ldap's Conn so deadlines can be set on it:
// go-ldap has no context support and runs the StartTLS handshake unbounded.
type conn struct {
	*ldap.Conn
	raw net.Conn
}

// NewLDAP checks cfg and prepares TLS; it does not contact the directory,
// so Ops starts while the directory is down and logins report 503.
func NewLDAP(cfg config.LDAP, log *slog.Logger) (*LDAP, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("ldap url %q: %w", cfg.URL, err)
	}
	if u.Scheme != "ldap" && u.Scheme != "ldaps" || u.Hostname() == "" {
		return nil, fmt.Errorf("ldap url %q: want ldap://host[:port] or ldaps://host[:port]", cfg.URL)
	}
	if cfg.StartTLS && u.Scheme == "ldaps" {
		return nil, fmt.Errorf("ldap url %q: start_tls is for ldap:// URLs", cfg.URL)
	}
	cfg.UserFilter = cmp.Or(cfg.UserFilter, "(uid={user})")
	if !strings.Contains(cfg.UserFilter, "{user}") {
		return nil, fmt.Errorf("ldap user_filter %q: must contain {user}", cfg.UserFilter)
	}
	if _, err := ldap.CompileFilter(userFilter(cfg.UserFilter, "x")); err != nil {
		return nil, fmt.Errorf("ldap user_filter %q: %w", cfg.UserFilter, err)
	}
	cfg.GroupNameAttr = cmp.Or(cfg.GroupNameAttr, "cn")
	cfg.PoolSize = max(cfg.PoolSize, 0)
	p := &LDAP{
		cfg: cfg, log: log.With("provider", "ldap"), url: cfg.URL,
		ldaps: u.Scheme == "ldaps", timeout: time.Duration(cfg.Timeout),
		groupFilter: cfg.GroupFilter, idle: make(chan *conn, cfg.PoolSize),
	}
	if p.timeout <= 0 {
		p.timeout = 5 * time.Second
	}
	p.timeLimit = max(1, int(p.timeout/time.Second))
	port := cmp.Or(u.Port(), map[bool]string{false: "389", true: "636"}[p.ldaps])
	p.addr = net.JoinHostPort(u.Hostname(), port)
	if m := loginAttrRE.FindStringSubmatch(cfg.UserFilter); m != nil {
		p.loginAttr = m[1]
	}
	p.groupFilter = cmp.Or(p.groupFilter, defaultGroupFilter)
	if cfg.NestedGroups && p.groupFilter == defaultGroupFilter {
		p.groupFilter, p.inChain = inChainFilter, true
	}
	if cfg.GroupBaseDN != "" {
		probe := strings.NewReplacer("{dn}", "x", "{user}", "x").Replace(p.groupFilter)
		if _, err := ldap.CompileFilter(probe); err != nil {
			return nil, fmt.Errorf("ldap group_filter %q: %w", p.groupFilter, err)
		}
	}
	if p.ldaps || cfg.StartTLS {
		p.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify}
		if cfg.InsecureSkipVerify {
			p.log.Warn("ldap certificate verification is off (insecure_skip_verify); use it for testing only")
		}
		if cfg.CA != "" {
			pem, err := os.ReadFile(cfg.CA)
			if err != nil {
				return nil, fmt.Errorf("ldap ca: %w", err)
			}
			p.tls.RootCAs = x509.NewCertPool()
			if !p.tls.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ldap ca %q: no PEM certificate in the file", cfg.CA)
			}
		}
	}
	return p, nil
}

// Name is the provider's config name.
func (p *LDAP) Name() string { return "ldap" }

// Close drops the idle connections; later logins report ErrUnavailable.
func (p *LDAP) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.idle)
	}
	p.mu.Unlock()
	for c := range p.idle {
		_ = c.Close()
	}
	return nil
}

// Authenticate searches for user and binds as them with password.
func (p *LDAP) Authenticate(ctx context.Context, user, password string) (*Identity, error) {
	// An empty password would be an unauthenticated bind, which LDAP
	// servers accept as success: refuse it before the directory sees it.
	if password == "" || !validUser(user) {
		return nil, ErrInvalid
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("ldap %s: %w: %w", p.url, ErrUnavailable, err)
		}
		c, pooled, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		// go-ldap cannot be cancelled; a past deadline on the socket ends
		// whatever operation is in flight.
		stop := context.AfterFunc(ctx, func() { _ = c.raw.SetDeadline(time.Unix(1, 0)) })
		id, err := p.login(c.Conn, user, password)
		if !stop() {
			_ = c.Close()
			return nil, fmt.Errorf("ldap %s: %w: %w", p.url, ErrUnavailable, ctx.Err())
		}
		if err == nil || errors.Is(err, ErrInvalid) {
			p.put(c)
			return id, err
		}
		// The directory may have dropped an idle connection (restart, idle
		// timeout) just before we took it: not an outage, so try once on a
		// fresh one. A request timeout leaves the connection open and is
		// not retried, which keeps a hung directory to one timeout.
		dropped := c.IsClosing()
		_ = c.Close()
		if pooled && attempt == 0 && dropped {
			continue
		}
		p.log.Warn("ldap login failed", "error", err)
		return nil, p.unavailable(err)
	}
}

// login runs the user search, the user bind and the group searches on c.
// It returns ErrInvalid (with c still bound as the service account) or
// another error, after which c must be discarded.
func (p *LDAP) login(c *ldap.Conn, user, password string) (*Identity, error) {
	attrs := slices.DeleteFunc([]string{p.cfg.NameAttr, p.cfg.EmailAttr, p.cfg.MemberOfAttr, p.loginAttr}, func(s string) bool { return s == "" })
	// SizeLimit 2 is enough to tell one match from several.
	req := ldap.NewSearchRequest(p.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, p.timeLimit, false,
		userFilter(p.cfg.UserFilter, user), attrs, nil)
	res, err := c.Search(req)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || err == nil && len(res.Entries) > 1 {
		p.log.Warn("ldap user filter matches more than one entry; refusing the login", "user", user)
		return nil, ErrInvalid
	}
	if err != nil {
		return nil, fmt.Errorf("search user: %w", err)
	}
	if len(res.Entries) == 0 {
		return nil, ErrInvalid
	}
	entry := res.Entries[0]
	if entry.DN == "" {
		return nil, ErrInvalid // a bind with an empty name would be anonymous
	}

	bindErr := c.Bind(entry.DN, password)
	// A bind changes the connection's identity even when it fails, so the
	// service account binds again before anything else uses c.
	if err := p.bindService(c); err != nil {
		return nil, err
	}
	switch {
	case bindErr == nil:
	case ldap.IsErrorWithCode(bindErr, ldap.LDAPResultInvalidCredentials):
		return nil, ErrInvalid
	case ldap.IsErrorAnyOf(bindErr, ldap.LDAPResultInappropriateAuthentication, ldap.LDAPResultInsufficientAccessRights,
		ldap.LDAPResultUnwillingToPerform, ldap.LDAPResultConstraintViolation):
		// Disabled, locked or expired accounts answer with these.
		p.log.Info("ldap refused the user bind", "user", user, "error", bindErr)
		return nil, ErrInvalid
	default:
		return nil, fmt.Errorf("bind user: %w", bindErr)
	}

	groups, err := p.groups(c, entry, user)
	if err != nil {
		return nil, err
	}
	id := &Identity{User: user, Groups: groups, Provider: "ldap",
		Name: entry.GetEqualFoldAttributeValue(p.cfg.NameAttr), Email: entry.GetEqualFoldAttributeValue(p.cfg.EmailAttr)}
	// The directory's spelling, so grants match however the user typed it;
	// only a case variant of the input is taken, never a different name.
	if p.loginAttr != "" {
		for _, v := range entry.GetEqualFoldAttributeValues(p.loginAttr) {
			if strings.EqualFold(v, user) {
				id.User = v
				break
			}
		}
	}
	return id, nil
}

// groupSet gathers group names and remembers the DNs already seen, which
// keeps the nesting walk finite when groups contain each other.
type groupSet struct {
	names map[string]bool
	seen  map[string]bool
	dns   []string // in the order found; a nesting walk starts from them
}

// add records a group and reports whether its DN is new.
func (s *groupSet) add(dn, name string) bool {
	if name != "" {
		s.names[name] = true
	}
	key := strings.ToLower(dn)
	if s.seen[key] {
		return false
	}
	s.seen[key] = true
	s.dns = append(s.dns, dn)
	return true
}

// groups collects group names from the user's memberOf values and, with a
// group base, from a group search; nesting is walked when the directory has
// no in-chain rule.
func (p *LDAP) groups(c *ldap.Conn, entry *ldap.Entry, user string) ([]string, error) {
	set := &groupSet{names: map[string]bool{}, seen: map[string]bool{}}
	if p.cfg.MemberOfAttr != "" {
		for _, dn := range entry.GetEqualFoldAttributeValues(p.cfg.MemberOfAttr) {
			set.add(dn, groupName(dn, p.cfg.GroupNameAttr))
		}
	}
	if p.cfg.GroupBaseDN != "" {
		r := strings.NewReplacer("{dn}", ldap.EscapeFilter(entry.DN), "{user}", ldap.EscapeFilter(user))
		found, err := p.searchGroups(c, r.Replace(p.groupFilter))
		walk := p.cfg.NestedGroups && !p.inChain && strings.Contains(p.groupFilter, "{dn}")
		switch {
		case err != nil && (!p.inChain || isConnErr(err)):
			return nil, fmt.Errorf("search groups: %w", err)
		case p.inChain && (err != nil || len(found) == 0):
			// OpenLDAP ignores (or refuses) the in-chain rule: find the
			// direct groups and walk up from them instead.
			found, err = p.searchGroups(c, strings.ReplaceAll(defaultGroupFilter, "{dn}", ldap.EscapeFilter(entry.DN)))
			if err != nil {
				return nil, fmt.Errorf("search groups: %w", err)
			}
			walk = true
		}
		for _, g := range found {
			set.add(g.DN, p.entryName(g))
		}
		if walk {
			if err := p.walk(c, set, user); err != nil {
				return nil, err
			}
		}
	}
	out := make([]string, 0, len(set.names))
	for n := range set.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// walk adds the groups that contain the groups in set, breadth-first with
// one search per level (ORing up to orChunk DNs), up to maxNesting levels.
func (p *LDAP) walk(c *ldap.Conn, set *groupSet, user string) error {
	filter := p.groupFilter
	if p.inChain {
		filter = defaultGroupFilter
	}
	// {user} still names the login: it finds the direct groups again,
	// which set already has, and nothing else.
	r := strings.NewReplacer("{user}", ldap.EscapeFilter(user))
	frontier := slices.Clone(set.dns)
	for depth := 0; len(frontier) > 0; depth++ {
		if depth == maxNesting {
			p.log.Warn("ldap groups nest deeper than the limit; deeper groups are ignored", "limit", maxNesting)
			return nil
		}
		var next []string
		for chunk := range slices.Chunk(frontier, orChunk) {
			var b strings.Builder
			b.WriteString("(|")
			for _, dn := range chunk {
				b.WriteString(strings.ReplaceAll(r.Replace(filter), "{dn}", ldap.EscapeFilter(dn)))
			}
			b.WriteString(")")
			found, err := p.searchGroups(c, b.String())
			if err != nil {
				return fmt.Errorf("search nested groups: %w", err)
			}
			for _, g := range found {
				if set.add(g.DN, p.entryName(g)) {
					next = append(next, g.DN)
				}
			}
		}
		frontier = next
	}
	return nil
}

func (p *LDAP) searchGroups(c *ldap.Conn, filter string) ([]*ldap.Entry, error) {
	req := ldap.NewSearchRequest(p.cfg.GroupBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, p.timeLimit, false,
		filter, []string{p.cfg.GroupNameAttr}, nil)
	res, err := c.Search(req)
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

func (p *LDAP) entryName(e *ldap.Entry) string {
	if n := e.GetEqualFoldAttributeValue(p.cfg.GroupNameAttr); n != "" {
		return n
	}
	return groupName(e.DN, p.cfg.GroupNameAttr)
}

func (p *LDAP) bindService(c *ldap.Conn) error {
	var err error
	if p.cfg.BindDN == "" {
		err = c.UnauthenticatedBind("")
	} else {
		err = c.Bind(p.cfg.BindDN, p.cfg.BindPassword)
	}
	if err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			p.log.Error("ldap service account bind refused; check bind_dn and bind_password", "bind_dn", p.cfg.BindDN)
		}
		return fmt.Errorf("bind service account: %w", err)
	}
	return nil
}

// get takes an idle connection or dials; pooled says which.
func (p *LDAP) get(ctx context.Context) (c *conn, pooled bool, err error) {
	for {
		select {
		case c, ok := <-p.idle:
			if !ok {
				return nil, false, fmt.Errorf("ldap %s: %w: provider closed", p.url, ErrUnavailable)
			}
			if c.IsClosing() { // the directory hung up while it was idle
				_ = c.Close()
				continue
			}
			return c, true, nil
		default:
			c, err := p.dial(ctx)
			if err != nil {
				p.log.Warn("ldap dial failed", "error", err)
				return nil, false, p.unavailable(err)
			}
			return c, false, nil
		}
	}
}

func (p *LDAP) put(c *conn) {
	p.mu.Lock()
	if !p.closed && !c.IsClosing() {
		select {
		case p.idle <- c:
			p.mu.Unlock()
			return
		default:
		}
	}
	p.mu.Unlock()
	_ = c.Close()
}

// dial connects (TLS as configured) and binds as the service account, all
// within the timeout. It dials itself rather than with ldap.DialURL so that
// ctx can end the TCP connect and the TLS handshake.
func (p *LDAP) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	raw, err := (&net.Dialer{Timeout: p.timeout}).DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	nc := raw
	if p.ldaps {
		tc := tls.Client(raw, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			stop()
			raw.Close()
			return nil, fmt.Errorf("ldaps handshake: %w", err)
		}
		nc = tc
	}
	lc := ldap.NewConn(nc, p.ldaps)
	lc.Start()
	lc.SetTimeout(p.timeout)
	c := &conn{Conn: lc, raw: raw}
	if p.cfg.StartTLS {
		err = lc.StartTLS(p.tls)
	}
	if err == nil {
		err = p.bindService(lc)
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (p *LDAP) unavailable(err error) error {
	return fmt.Errorf("ldap %s: %w: %v", p.url, ErrUnavailable, err)
}

// isConnErr reports an error of the connection rather than an LDAP answer.
func isConnErr(err error) bool {
	var ne net.Error
	return ldap.IsErrorWithCode(err, ldap.ErrorNetwork) || errors.As(err, &ne)
}

// validUser refuses names no directory holds: empty, overlong, not UTF-8
// (LDAP strings are UTF-8) or with control characters, which some servers
// answer with a protocol error rather than no match.
func validUser(user string) bool {
	if user == "" || len(user) > maxUserLen || !utf8.ValidString(user) {
		return false
	}
	return !strings.ContainsFunc(user, unicode.IsControl)
}

// userFilter puts the RFC 4515-escaped login name into the filter template,
// so characters such as * ( ) \ match literally and cannot add structure.
func userFilter(template, user string) string {
	return strings.ReplaceAll(template, "{user}", ldap.EscapeFilter(user))
}

// groupName is a group's name from its DN: the value of the first RDN
// component of type attr (cn=ops-admins,ou=groups,... -> ops-admins), else
// the first RDN's first value; "" when dn does not parse.
func groupName(dn, attr string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) == 0 {
		return ""
	}
	for _, a := range parsed.RDNs[0].Attributes {
		if strings.EqualFold(a.Type, attr) {
			return a.Value
		}
	}
	return parsed.RDNs[0].Attributes[0].Value
}
