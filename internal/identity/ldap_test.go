package identity_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/testutil"
)

const (
	people  = "ou=people,dc=example,dc=org"
	groups  = "ou=groups,dc=example,dc=org"
	svcDN   = "cn=ops-svc,dc=example,dc=org"
	svcPW   = "svc-secret"
	alicePW = "alice-pw-∆"
	bobPW   = "bob-pw"
	// special holds every RFC 4515 filter metacharacter; its DN needs the
	// trailing backslash escaped.
	special   = `star*(user)\`
	specialPW = "special-pw"
	deepChain = 12 // groups g0..g11, each a member of the next
)

// testLDIF is the directory: people (one with filter metacharacters in
// uid, two sharing a mail address), groups with nesting, a membership cycle
// and a chain deeper than the provider walks.
func testLDIF() string {
	var b strings.Builder
	entry := func(dn string, lines ...string) {
		fmt.Fprintf(&b, "dn: %s\n%s\n\n", dn, strings.Join(lines, "\n"))
	}
	entry(people, "objectClass: organizationalUnit", "ou: people")
	entry(groups, "objectClass: organizationalUnit", "ou: groups")
	entry(svcDN, "objectClass: organizationalRole", "objectClass: simpleSecurityObject", "cn: ops-svc", "userPassword: "+svcPW)
	person := func(uid, cn, mail, pw string) {
		entry("uid="+strings.ReplaceAll(uid, `\`, `\\`)+","+people, "objectClass: inetOrgPerson",
			"uid: "+uid, "cn: "+cn, "sn: "+cn, "mail: "+mail, "userPassword: "+pw)
	}
	person("alice", "Alice Liddell", "alice@example.org", alicePW)
	person("bob", "Bob Builder", "bob@example.org", bobPW)
	person("carol", "Carol Cycle", "carol@example.org", "carol-pw")
	person("dave", "Dave Deep", "dave@example.org", "dave-pw")
	person(special, "Star User", "star@example.org", specialPW)
	person("starling", "Starling", "starling@example.org", specialPW)
	person("shared1", "Shared One", "shared@example.org", "shared-pw")
	person("shared2", "Shared Two", "shared@example.org", "shared-pw")

	group := func(cn string, members ...string) {
		lines := []string{"objectClass: groupOfNames", "cn: " + cn}
		for _, m := range members {
			lines = append(lines, "member: "+m)
		}
		entry("cn="+cn+","+groups, lines...)
	}
	group("ops-admins", "uid=alice,"+people)
	group("developers", "uid=bob,"+people, `uid=star*(user)\\,`+people)
	group("engineering", "cn=developers,"+groups)
	group("cycle-a", "uid=carol,"+people, "cn=cycle-b,"+groups)
	group("cycle-b", "cn=cycle-a,"+groups)
	group("g0", "uid=dave,"+people)
	for i := 1; i < deepChain; i++ {
		group(fmt.Sprintf("g%d", i), fmt.Sprintf("cn=g%d,%s", i-1, groups))
	}
	return b.String()
}

func baseConfig(s *testutil.Slapd) config.LDAP {
	return config.LDAP{
		URL: s.URL, BindDN: svcDN, BindPassword: svcPW, BaseDN: people,
		UserFilter: "(uid={user})", GroupBaseDN: groups, GroupFilter: "(member={dn})", NestedGroups: true,
		NameAttr: "cn", EmailAttr: "mail", MemberOfAttr: "memberOf", GroupNameAttr: "cn",
		Timeout: config.Duration(5 * time.Second), PoolSize: 4,
	}
}

func newLDAP(t *testing.T, cfg config.LDAP) (*identity.LDAP, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	p, err := identity.NewLDAP(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, logs
}

func deepGroups(n int) []string {
	var g []string
	for i := range n {
		g = append(g, fmt.Sprintf("g%d", i))
	}
	return g
}

func TestLDAPAuthenticate(t *testing.T) {
	s := testutil.StartSlapd(t, testLDIF())
	noNesting := func(c *config.LDAP) { c.NestedGroups = false }
	searchOnly := func(c *config.LDAP) { c.MemberOfAttr = "" }
	memberOfOnly := func(c *config.LDAP) { c.GroupBaseDN = "" }
	anonymous := func(c *config.LDAP) { c.BindDN, c.BindPassword = "", "" }
	byUIDOrMail := func(c *config.LDAP) { c.UserFilter = "(|(uid={user})(mail={user}))" }
	customNested := func(c *config.LDAP) {
		c.GroupFilter = "(&(objectClass=groupOfNames)(member={dn}))"
		c.MemberOfAttr = ""
	}
	sorted := func(g ...string) []string { slices.Sort(g); return g }

	tests := []struct {
		name, user, password string
		cfg                  func(*config.LDAP)
		want                 *identity.Identity // nil: want ErrInvalid
		log                  string             // the log must contain this
	}{
		{name: "alice", user: "alice", password: alicePW, want: &identity.Identity{
			User: "alice", Name: "Alice Liddell", Email: "alice@example.org", Groups: []string{"ops-admins"}}},
		{name: "directory spelling of the name", user: "ALICE", password: alicePW, want: &identity.Identity{
			User: "alice", Name: "Alice Liddell", Email: "alice@example.org", Groups: []string{"ops-admins"}}},
		{name: "nested group", user: "bob", password: bobPW, want: &identity.Identity{
			User: "bob", Name: "Bob Builder", Email: "bob@example.org", Groups: []string{"developers", "engineering"}}},
		{name: "nesting off", user: "bob", password: bobPW, cfg: noNesting, want: &identity.Identity{
			User: "bob", Name: "Bob Builder", Email: "bob@example.org", Groups: []string{"developers"}}},
		{name: "memberOf only", user: "bob", password: bobPW, cfg: memberOfOnly, want: &identity.Identity{
			User: "bob", Name: "Bob Builder", Email: "bob@example.org", Groups: []string{"developers"}}},
		{name: "group search only", user: "bob", password: bobPW, cfg: searchOnly, want: &identity.Identity{
			User: "bob", Name: "Bob Builder", Email: "bob@example.org", Groups: []string{"developers", "engineering"}}},
		{name: "custom group filter walks nesting", user: "bob", password: bobPW, cfg: customNested, want: &identity.Identity{
			User: "bob", Name: "Bob Builder", Email: "bob@example.org", Groups: []string{"developers", "engineering"}}},
		{name: "anonymous search", user: "alice", password: alicePW, cfg: anonymous, want: &identity.Identity{
			User: "alice", Name: "Alice Liddell", Email: "alice@example.org", Groups: []string{"ops-admins"}}},
		{name: "membership cycle ends", user: "carol", password: "carol-pw", want: &identity.Identity{
			User: "carol", Name: "Carol Cycle", Email: "carol@example.org", Groups: []string{"cycle-a", "cycle-b"}}},
		{name: "nesting depth limit", user: "dave", password: "dave-pw", log: "nest deeper", want: &identity.Identity{
			User: "dave", Name: "Dave Deep", Email: "dave@example.org", Groups: sorted(deepGroups(11)...)}},
		{name: "special characters", user: special, password: specialPW, want: &identity.Identity{
			User: special, Name: "Star User", Email: "star@example.org", Groups: []string{"developers", "engineering"}}},
		// Without memberOf the group search must find the member by its
		// escaped DN, which has * ( ) and \ in it.
		{name: "special characters, group search", user: special, password: specialPW, cfg: searchOnly, want: &identity.Identity{
			User: special, Name: "Star User", Email: "star@example.org", Groups: []string{"developers", "engineering"}}},
		{name: "login by mail", user: "bob@example.org", password: bobPW, cfg: byUIDOrMail, want: &identity.Identity{
			User: "bob@example.org", Name: "Bob Builder", Email: "bob@example.org", Groups: []string{"developers", "engineering"}}},

		{name: "wrong password", user: "alice", password: "nope"},
		{name: "other user's password", user: "alice", password: bobPW},
		{name: "empty password", user: "alice", password: ""},
		{name: "empty password, anonymous", user: "alice", password: "", cfg: anonymous},
		{name: "unknown user", user: "mallory", password: alicePW},
		{name: "empty user", user: "", password: alicePW},
		{name: "long user", user: strings.Repeat("a", 257), password: alicePW},
		{name: "invalid UTF-8", user: "alice\xff", password: alicePW},
		{name: "inject star", user: "*", password: alicePW},
		{name: "inject close and any", user: "*)(uid=*", password: alicePW},
		{name: "inject or", user: "alice)(|(uid=*", password: alicePW},
		{name: "inject objectClass", user: "*)(objectClass=*", password: alicePW},
		{name: "inject prefix", user: "alic*", password: alicePW},
		{name: "inject NUL", user: "alice\x00", password: alicePW},
		{name: "star alone is literal", user: "star*", password: specialPW},
		{name: "escaped form is literal", user: `star\2a\28user\29\5c`, password: specialPW},
		{name: "ambiguous match", user: "shared@example.org", password: "shared-pw", cfg: byUIDOrMail, log: "more than one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(s)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			p, logs := newLDAP(t, cfg)
			got, err := p.Authenticate(t.Context(), tc.user, tc.password)
			if tc.want == nil {
				if !errors.Is(err, identity.ErrInvalid) || got != nil {
					t.Fatalf("got %+v, %v; want ErrInvalid", got, err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				tc.want.Provider = "ldap"
				if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
					t.Fatalf("got  %+v\nwant %+v", got, tc.want)
				}
			}
			if tc.log != "" && !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("log lacks %q:\n%s", tc.log, logs)
			}
			if strings.Contains(logs.String(), tc.password) && tc.password != "" {
				t.Fatalf("the password reached the log:\n%s", logs)
			}
		})
	}
}

func TestLDAPTLS(t *testing.T) {
	s := testutil.StartSlapd(t, testLDIF())
	ldapsLocalhost := strings.Replace(s.LDAPSURL, "127.0.0.1", "localhost", 1)
	tests := []struct {
		name     string
		url      string
		startTLS bool
		ca       string
		insecure bool
		ok       bool
	}{
		{name: "ldaps", url: s.LDAPSURL, ca: s.CAFile, ok: true},
		{name: "ldaps by host name", url: ldapsLocalhost, ca: s.CAFile, ok: true},
		{name: "ldaps wrong CA", url: s.LDAPSURL, ca: s.WrongCAFile},
		{name: "ldaps system roots", url: s.LDAPSURL},
		{name: "ldaps insecure", url: s.LDAPSURL, insecure: true, ok: true},
		{name: "StartTLS", url: s.URL, startTLS: true, ca: s.CAFile, ok: true},
		{name: "StartTLS wrong CA", url: s.URL, startTLS: true, ca: s.WrongCAFile},
		{name: "plain ldap to the ldaps port", url: strings.Replace(s.LDAPSURL, "ldaps", "ldap", 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(s)
			cfg.URL, cfg.StartTLS, cfg.CA, cfg.InsecureSkipVerify = tc.url, tc.startTLS, tc.ca, tc.insecure
			cfg.Timeout = config.Duration(2 * time.Second)
			p, _ := newLDAP(t, cfg)
			got, err := p.Authenticate(t.Context(), "alice", alicePW)
			if tc.ok {
				if err != nil || got.User != "alice" {
					t.Fatalf("got %+v, %v", got, err)
				}
				return
			}
			// A certificate the provider cannot trust is an outage, never a
			// wrong password.
			if !errors.Is(err, identity.ErrUnavailable) || errors.Is(err, identity.ErrInvalid) {
				t.Fatalf("got %+v, %v; want ErrUnavailable", got, err)
			}
			t.Log(err)
		})
	}
}

func TestLDAPNewErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  config.LDAP
		want string
	}{
		{"http url", config.LDAP{URL: "http://dir:389", BaseDN: people}, "want ldap://"},
		{"no host", config.LDAP{URL: "ldap://", BaseDN: people}, "want ldap://"},
		{"StartTLS on ldaps", config.LDAP{URL: "ldaps://dir", StartTLS: true}, "start_tls"},
		{"filter without user", config.LDAP{URL: "ldap://dir", UserFilter: "(uid=alice)"}, "{user}"},
		{"filter syntax", config.LDAP{URL: "ldap://dir", UserFilter: "(uid={user}"}, "user_filter"},
		{"group filter syntax", config.LDAP{URL: "ldap://dir", GroupBaseDN: groups, GroupFilter: "member={dn}"}, "group_filter"},
		{"missing CA", config.LDAP{URL: "ldaps://dir", CA: filepath.Join(dir, "missing.pem")}, "ldap ca"},
		{"CA not PEM", config.LDAP{URL: "ldaps://dir", CA: notPEM}, "no PEM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := identity.NewLDAP(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestLDAPUnavailable stops and restarts the directory: logins must fail
// with ErrUnavailable (503) within about the timeout, and work again on the
// first try after the restart although the pool held dead connections.
func TestLDAPUnavailable(t *testing.T) {
	s := testutil.StartSlapd(t, testLDIF())
	cfg := baseConfig(s)
	cfg.Timeout, cfg.PoolSize = config.Duration(time.Second), 2
	p, _ := newLDAP(t, cfg)
	login := func(password string) (*identity.Identity, time.Duration, error) {
		start := time.Now()
		id, err := p.Authenticate(t.Context(), "alice", password)
		return id, time.Since(start), err
	}
	// Two at once leave two idle connections in the pool.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, _, err := login(alicePW); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	s.Stop()
	for _, pw := range []string{alicePW, "wrong"} {
		_, took, err := login(pw)
		if !errors.Is(err, identity.ErrUnavailable) || errors.Is(err, identity.ErrInvalid) {
			t.Fatalf("directory down, password %q: got %v, want ErrUnavailable", pw, err)
		}
		t.Logf("directory down: %v after %v", err, took)
		if took > 3*time.Second {
			t.Fatalf("directory down: took %v with a 1s timeout", took)
		}
	}

	s.Start()
	if id, _, err := login(alicePW); err != nil || id.User != "alice" {
		t.Fatalf("after restart: %+v, %v", id, err)
	}
	if _, _, err := login("wrong"); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("after restart, wrong password: %v", err)
	}

	// A restart between two logins leaves only dead connections in the
	// pool; the next login must not see them.
	s.Stop()
	s.Start()
	for range 3 {
		if id, _, err := login(alicePW); err != nil || id.User != "alice" {
			t.Fatalf("after a quick restart: %+v, %v", id, err)
		}
	}
}

// TestLDAPHungDirectory points the provider at a server that accepts TCP
// connections and never answers: the timeout and the caller's context must
// both end the login with ErrUnavailable.
func TestLDAPHungDirectory(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		held.Wait()
	})
	held.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	})

	for _, tc := range []struct {
		name     string
		url      string
		startTLS bool
		timeout  time.Duration
		ctx      time.Duration
	}{
		{"ldap timeout", "ldap://" + l.Addr().String(), false, 500 * time.Millisecond, time.Minute},
		{"ldaps timeout", "ldaps://" + l.Addr().String(), false, 500 * time.Millisecond, time.Minute},
		{"StartTLS timeout", "ldap://" + l.Addr().String(), true, 500 * time.Millisecond, time.Minute},
		{"context", "ldap://" + l.Addr().String(), false, time.Minute, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newLDAP(t, config.LDAP{URL: tc.url, StartTLS: tc.startTLS, BaseDN: people, Timeout: config.Duration(tc.timeout)})
			ctx, cancel := context.WithTimeout(t.Context(), tc.ctx)
			defer cancel()
			start := time.Now()
			_, err := p.Authenticate(ctx, "alice", alicePW)
			if took := time.Since(start); took > min(tc.timeout, tc.ctx)+2*time.Second {
				t.Fatalf("took %v", took)
			}
			if !errors.Is(err, identity.ErrUnavailable) {
				t.Fatalf("got %v, want ErrUnavailable", err)
			}
		})
	}
}

// TestLDAPConcurrent logs in from more goroutines than the pool holds;
// run with -race.
func TestLDAPConcurrent(t *testing.T) {
	s := testutil.StartSlapd(t, testLDIF())
	cfg := baseConfig(s)
	cfg.PoolSize = 2
	p, _ := newLDAP(t, cfg)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			user, pw, groups := "alice", alicePW, []string{"ops-admins"}
			if i%2 == 1 {
				user, pw, groups = "bob", bobPW, []string{"developers", "engineering"}
			}
			id, err := p.Authenticate(t.Context(), user, pw)
			if err != nil || id.User != user || !slices.Equal(id.Groups, groups) {
				t.Errorf("%d %s: got %+v, %v", i, user, id, err)
			}
			// A failed bind on a pooled connection must not leave it bound
			// as nobody (or as the user) for the next login.
			if _, err := p.Authenticate(t.Context(), user, "wrong"); !errors.Is(err, identity.ErrInvalid) {
				t.Errorf("%d %s wrong password: %v", i, user, err)
			}
		})
	}
	wg.Wait()
}

// TestLDAPPoolReuse sends logins one after another through one pooled
// connection: each must search as the service account again, which the
// test directory enforces (people can read only their own entry).
func TestLDAPPoolReuse(t *testing.T) {
	s := testutil.StartSlapd(t, testLDIF())
	cfg := baseConfig(s)
	cfg.PoolSize = 1
	p, _ := newLDAP(t, cfg)
	for i, tc := range []struct {
		user, password string
		groups         []string // nil: want ErrInvalid
	}{
		{"alice", alicePW, []string{"ops-admins"}},
		{"bob", bobPW, []string{"developers", "engineering"}},
		{"alice", "wrong", nil},
		{"bob", bobPW, []string{"developers", "engineering"}},
		{special, specialPW, []string{"developers", "engineering"}},
		{"alice", alicePW, []string{"ops-admins"}},
	} {
		id, err := p.Authenticate(t.Context(), tc.user, tc.password)
		if tc.groups == nil {
			if !errors.Is(err, identity.ErrInvalid) {
				t.Fatalf("%d %s: got %v, want ErrInvalid", i, tc.user, err)
			}
			continue
		}
		if err != nil || !slices.Equal(id.Groups, tc.groups) {
			t.Fatalf("%d %s: got %+v, %v", i, tc.user, id, err)
		}
	}
}

func TestLDAPClose(t *testing.T) {
	s := testutil.StartSlapd(t, testLDIF())
	p, _ := newLDAP(t, baseConfig(s))
	if _, err := p.Authenticate(t.Context(), "alice", alicePW); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Authenticate(t.Context(), "alice", alicePW); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("after Close: %v", err)
	}
	if p.Name() != "ldap" {
		t.Fatalf("Name() = %q", p.Name())
	}
}
