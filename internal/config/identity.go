package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Identity configures who may use Ops: login providers, local users,
// sessions, roles and their grants. See docs/identity.md.
type Identity struct {
	Providers Strings  `yaml:"providers" doc:"password providers tried in order at login: local, ldap"`
	Users     []User   `yaml:"users" doc:"local users from config (more come from ops user add)"`
	LDAP      LDAP     `yaml:"ldap"`
	Kerberos  Kerberos `yaml:"kerberos"`
	Session   Session  `yaml:"session"`
	Roles     []Role   `yaml:"roles" doc:"custom roles beside admin, editor and viewer"`
	Grants    []Grant  `yaml:"grants" doc:"roles granted to users and directory groups"`
	AdminFile bool     `yaml:"admin_token_file" doc:"on first run (no user, no token) write an admin token to data_dir/admin.token"`
	Lockout   Lockout  `yaml:"lockout"`
}

// User is a local user defined in config.
type User struct {
	Name         string  `yaml:"name"`
	PasswordHash string  `yaml:"password_hash" doc:"bcrypt or argon2id hash (ops user hash prints one)"`
	Email        string  `yaml:"email"`
	Groups       Strings `yaml:"groups"`
	Roles        Strings `yaml:"roles"`
}

// LDAP configures an OpenLDAP or Active Directory provider.
type LDAP struct {
	URL                string   `yaml:"url" doc:"ldap://host:389 or ldaps://host:636; empty turns the provider off"`
	StartTLS           bool     `yaml:"start_tls" doc:"upgrade ldap:// with StartTLS"`
	CA                 string   `yaml:"ca" doc:"CA file that signed the directory's certificate"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify" doc:"do not verify the directory's certificate (testing only)"`
	BindDN             string   `yaml:"bind_dn" doc:"service account that searches for users"`
	BindPassword       string   `yaml:"bind_password" doc:"its password (env: OPS_IDENTITY_LDAP_BIND_PASSWORD)"`
	BaseDN             string   `yaml:"base_dn" doc:"where users are searched"`
	UserFilter         string   `yaml:"user_filter" doc:"{user} is replaced by the RFC 4515-escaped login name"`
	GroupBaseDN        string   `yaml:"group_base_dn" doc:"where groups are searched; empty uses memberOf only"`
	GroupFilter        string   `yaml:"group_filter" doc:"{dn} is the user's escaped DN, {user} the login name"`
	NestedGroups       bool     `yaml:"nested_groups" doc:"Active Directory: resolve nested groups with LDAP_MATCHING_RULE_IN_CHAIN"`
	NameAttr           string   `yaml:"name_attribute" doc:"attribute with the display name"`
	EmailAttr          string   `yaml:"email_attribute"`
	MemberOfAttr       string   `yaml:"member_of_attribute" doc:"attribute listing the user's groups; empty disables it"`
	GroupNameAttr      string   `yaml:"group_name_attribute" doc:"attribute of a group entry used as its name"`
	Timeout            Duration `yaml:"timeout" doc:"dial and operation timeout"`
	PoolSize           int      `yaml:"pool_size" doc:"idle connections kept to the directory"`
}

// Kerberos configures SPNEGO (HTTP Negotiate) single sign-on.
type Kerberos struct {
	Keytab     string            `yaml:"keytab" doc:"service keytab with HTTP/<host>@REALM; empty turns SPNEGO off"`
	Principal  string            `yaml:"principal" doc:"service principal to accept, e.g. HTTP/ops.example.com; empty accepts any in the keytab"`
	GroupSIDs  map[string]string `yaml:"group_sids" doc:"Active Directory group SID -> group name, read from the ticket's PAC"`
	StripRealm bool              `yaml:"strip_realm" doc:"user name without @REALM"`
}

// Session configures browser sessions.
type Session struct {
	Idle     Duration `yaml:"idle" doc:"a session unused this long ends"`
	Absolute Duration `yaml:"absolute" doc:"a session ends this long after login regardless of use"`
	Secure   string   `yaml:"secure" doc:"Secure cookie flag: auto (when the request came over TLS), always or never"`
}

// Role is a custom role: a set of permissions, optionally including other roles.
type Role struct {
	Name        string  `yaml:"name"`
	Include     Strings `yaml:"include" doc:"roles whose permissions this one has too"`
	Permissions Strings `yaml:"permissions" doc:"area:action, e.g. views:read, events:write, graph:*"`
}

// Grant gives a role to users and directory groups.
type Grant struct {
	Role   string  `yaml:"role"`
	Users  Strings `yaml:"users"`
	Groups Strings `yaml:"groups"`
}

// Lockout slows password guessing: the identity module's own throttle
// per user and per client address, applied before a password is checked,
// and the locks that the event graph writes to the POLICY bucket (see
// examples/bruteforce.yaml).
type Lockout struct {
	Policy  bool     `yaml:"policy" doc:"refuse logins for users and IPs locked in the POLICY bucket"`
	User    Throttle `yaml:"user" doc:"refused logins per user name (case-insensitive) before that user's logins are refused for a while"`
	Address Throttle `yaml:"address" doc:"refused logins per client address (IPv6: per /64) before that address's logins are refused for a while"`
	Settle  Duration `yaml:"settle" doc:"after a refused login, wait up to this long for the event graph to act on its ev.auth.failed (a POLICY lock) before the next attempt for the same user or address is checked; 0 does not wait"`
}

// Throttle refuses logins for For once Failures refused logins happened
// within Within.
type Throttle struct {
	Failures int      `yaml:"failures" doc:"refused logins that start a lockout; 0 turns this throttle off"`
	Within   Duration `yaml:"within" doc:"the window failures are counted in"`
	For      Duration `yaml:"for" doc:"how long logins are refused once the count is reached"`
}

func defaultIdentity() Identity {
	return Identity{
		Providers: Strings{"local"},
		LDAP: LDAP{
			UserFilter: "(uid={user})", NameAttr: "cn", EmailAttr: "mail", MemberOfAttr: "memberOf",
			GroupNameAttr: "cn", GroupFilter: "(member={dn})", Timeout: Duration(5 * time.Second), PoolSize: 4,
		},
		Session:   Session{Idle: Duration(2 * time.Hour), Absolute: Duration(24 * time.Hour), Secure: "auto"},
		AdminFile: true,
		Lockout: Lockout{Policy: true, Settle: Duration(2 * time.Second),
			User:    Throttle{Failures: 10, Within: Duration(10 * time.Minute), For: Duration(15 * time.Minute)},
			Address: Throttle{Failures: 50, Within: Duration(10 * time.Minute), For: Duration(15 * time.Minute)}},
	}
}

// BuiltinRoles are the roles every Ops has.
var BuiltinRoles = []string{"admin", "editor", "viewer"}

var permRE = regexp.MustCompile(`^([a-z]+|\*):([a-z]+|\*)$`)

func (id *Identity) validate(add func(path, format string, a ...any)) {
	known := map[string]bool{"local": true, "ldap": true}
	seenP := map[string]bool{}
	for i, p := range id.Providers {
		switch {
		case !known[p]:
			add(fmt.Sprintf("identity.providers[%d]", i), "unknown provider %q (want local or ldap; kerberos is set up under identity.kerberos)", p)
		case seenP[p]:
			add(fmt.Sprintf("identity.providers[%d]", i), "provider %q listed twice", p)
		case p == "ldap" && id.LDAP.URL == "":
			add("identity.ldap.url", "provider ldap is listed but has no url")
		}
		seenP[p] = true
	}
	roles := map[string]bool{}
	for _, r := range BuiltinRoles {
		roles[r] = true
	}
	for i, r := range id.Roles {
		path := fmt.Sprintf("identity.roles[%d]", i)
		if r.Name == "" {
			add(path+".name", "required")
		} else if roles[r.Name] {
			add(path+".name", "role %q is defined twice (admin, editor and viewer are built in)", r.Name)
		}
		roles[r.Name] = true
		for j, p := range r.Permissions {
			if !permRE.MatchString(p) {
				add(fmt.Sprintf("%s.permissions[%d]", path, j), "want area:action such as views:read or graph:*, got %q", p)
			}
		}
	}
	for i, r := range id.Roles {
		for j, inc := range r.Include {
			if !roles[inc] {
				add(fmt.Sprintf("identity.roles[%d].include[%d]", i, j), "unknown role %q", inc)
			}
		}
	}
	for i, g := range id.Grants {
		if !roles[g.Role] {
			add(fmt.Sprintf("identity.grants[%d].role", i), "unknown role %q", g.Role)
		}
		if len(g.Users) == 0 && len(g.Groups) == 0 {
			add(fmt.Sprintf("identity.grants[%d]", i), "grants to no one: set users or groups")
		}
	}
	users := map[string]bool{}
	for i, u := range id.Users {
		path := fmt.Sprintf("identity.users[%d]", i)
		if u.Name == "" {
			add(path+".name", "required")
		} else if users[u.Name] {
			add(path+".name", "user %q is defined twice", u.Name)
		}
		users[u.Name] = true
		if !strings.HasPrefix(u.PasswordHash, "$2") && !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
			add(path+".password_hash", "want a bcrypt ($2b$...) or argon2id ($argon2id$...) hash; ops user hash prints one")
		}
		for j, r := range u.Roles {
			if !roles[r] {
				add(fmt.Sprintf("%s.roles[%d]", path, j), "unknown role %q", r)
			}
		}
	}
	if id.LDAP.URL != "" {
		l := id.LDAP
		if !strings.HasPrefix(l.URL, "ldap://") && !strings.HasPrefix(l.URL, "ldaps://") {
			add("identity.ldap.url", "want ldap://host:port or ldaps://host:port, got %q", l.URL)
		}
		if l.StartTLS && strings.HasPrefix(l.URL, "ldaps://") {
			add("identity.ldap.start_tls", "StartTLS is for ldap:// URLs; ldaps:// is TLS already")
		}
		if l.BaseDN == "" {
			add("identity.ldap.base_dn", "required when identity.ldap.url is set")
		}
		if !strings.Contains(l.UserFilter, "{user}") {
			add("identity.ldap.user_filter", "must contain {user}")
		}
		if l.GroupBaseDN != "" && !strings.Contains(l.GroupFilter, "{dn}") && !strings.Contains(l.GroupFilter, "{user}") {
			add("identity.ldap.group_filter", "must contain {dn} or {user}")
		}
		if l.PoolSize < 0 {
			add("identity.ldap.pool_size", "must not be negative")
		}
		if l.Timeout <= 0 {
			add("identity.ldap.timeout", "must be positive")
		}
	}
	for _, t := range []struct {
		name string
		t    Throttle
	}{{"user", id.Lockout.User}, {"address", id.Lockout.Address}} {
		if t.t.Failures < 0 || t.t.Failures > 0 && (t.t.Within <= 0 || t.t.For <= 0) {
			add("identity.lockout."+t.name, "want failures >= 0, and with failures a positive within and for")
		}
	}
	if id.Lockout.Settle < 0 || id.Lockout.Settle > Duration(30*time.Second) {
		add("identity.lockout.settle", "want 0 to 30s, got %s", id.Lockout.Settle)
	}
	if id.Session.Idle <= 0 || id.Session.Absolute <= 0 || id.Session.Idle > id.Session.Absolute {
		add("identity.session.idle", "want 0 < idle <= absolute")
	}
	switch id.Session.Secure {
	case "auto", "always", "never":
	default:
		add("identity.session.secure", "want auto, always or never, got %q", id.Session.Secure)
	}
}
