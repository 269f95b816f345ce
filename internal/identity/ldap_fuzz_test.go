package identity

import (
	"strings"
	"testing"
	"unicode/utf8"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// filterTemplates are user filters as operators write them; leaves is how
// many comparisons each holds.
var filterTemplates = []struct {
	template string
	leaves   int
}{
	{"(uid={user})", 1},
	{"(&(objectClass=user)(sAMAccountName={user}))", 2},
	{"(|(uid={user})(mail={user}))", 2},
	{"(&(objectClass=person)(!(nsAccountLock=TRUE))(uid={user}))", 3},
}

// FuzzLDAPFilter checks that no login name adds structure to a user filter:
// the filter compiles, has exactly the template's comparisons, and each
// {user} comparison is an equality whose value is the name, byte for byte.
func FuzzLDAPFilter(f *testing.F) {
	for _, s := range []string{
		"alice", "*", "*)(uid=*", "alice)(|(uid=*", "*)(objectClass=*", `star*(user)\`,
		`\2a`, `\`, "(", ")", "\x00", "é", "\xff", "a*b*c", "uid=*", "))))((((",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		if user == "" {
			return // Authenticate refuses it before building a filter
		}
		for _, tt := range filterTemplates {
			filter := userFilter(tt.template, user)
			packet, err := ldap.CompileFilter(filter)
			if err != nil {
				t.Fatalf("%q: %v", filter, err)
			}
			var leaves, users int
			walkFilter(packet, func(leaf *ber.Packet) {
				leaves++
				if leaf.Tag != ldap.FilterEqualityMatch || len(leaf.Children) != 2 {
					return
				}
				attr := leaf.Children[0].Data.String()
				if attr == "uid" || attr == "mail" || attr == "sAMAccountName" {
					users++
					if got := leaf.Children[1].Data.String(); got != user {
						t.Fatalf("%q: %s value %q, want %q", filter, attr, got, user)
					}
				}
			})
			if want := strings.Count(tt.template, "{user}"); leaves != tt.leaves || users != want {
				t.Fatalf("%q: %d comparisons, %d on the name; want %d and %d", filter, leaves, users, tt.leaves, want)
			}
			// Decompiling escapes the same way, so the text round-trips.
			back, err := ldap.DecompileFilter(packet)
			if err != nil || back != filter {
				t.Fatalf("decompiled %q (%v), built %q", back, err, filter)
			}
		}
	})
}

// walkFilter calls leaf for every comparison under the and/or/not nodes.
func walkFilter(p *ber.Packet, leaf func(*ber.Packet)) {
	switch p.Tag {
	case ldap.FilterAnd, ldap.FilterOr, ldap.FilterNot:
		for _, c := range p.Children {
			walkFilter(c, leaf)
		}
	default:
		leaf(p)
	}
}

// FuzzLDAPGroupName feeds memberOf-style DNs to groupName: it must not
// panic, and a DN built from an escaped cn must give that cn back.
func FuzzLDAPGroupName(f *testing.F) {
	for _, s := range []string{
		"ops-admins", "", "a,b", `a\b`, "a+b", "=", "#00", " lead", "trail ", "é", "\x00", `"quoted"`,
	} {
		f.Add(s, "cn=ops-admins,ou=groups,dc=example,dc=org")
	}
	f.Add("x", "CN=Domain Admins,CN=Users,DC=corp,DC=example")
	f.Add("x", "ou=x+cn=y,dc=z")
	f.Add("x", `cn=\,,dc=x`)
	f.Add("x", "cn=#0403616263,dc=x")
	f.Add("\xf4", "0")
	f.Fuzz(func(t *testing.T, name, dn string) {
		_ = groupName(dn, "cn")
		_ = groupName(dn, "")
		if name == "" || !utf8.ValidString(name) {
			return // LDAP strings are UTF-8; ParseDN turns stray bytes into U+FFFD
		}
		built := "cn=" + ldap.EscapeDN(name) + ",ou=groups,dc=example,dc=org"
		if _, err := ldap.ParseDN(built); err != nil {
			return // EscapeDN output go-ldap itself cannot parse is not ours to judge
		}
		if got := groupName(built, "cn"); got != name {
			t.Fatalf("groupName(%q) = %q, want %q", built, got, name)
		}
	})
}
