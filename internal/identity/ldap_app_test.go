package identity_test

import (
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestLDAPLogin signs in to a running Ops against a real slapd: directory
// groups become roles through grants, injection attempts fail, and a
// stopped directory is 503, not a failed login.
func TestLDAPLogin(t *testing.T) {
	s := testutil.StartSlapd(t, testLDIF())
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Identity.Providers = config.Strings{"local", "ldap"}
		c.Identity.LDAP = baseConfig(s)
		c.Identity.LDAP.URL = s.LDAPSURL
		c.Identity.LDAP.CA = s.CAFile
		c.Identity.Grants = []config.Grant{
			{Role: "admin", Groups: config.Strings{"ops-admins"}},
			{Role: "viewer", Groups: config.Strings{"engineering"}}, // bob is in it through developers
		}
	})
	var me struct {
		User, Email, Provider string
		Roles, Groups         []string
		CSRF                  string `json:"csrf_token"`
	}
	c := jar(t)
	resp := call(t, c, "POST", r.URL+"/api/v1/login", "", map[string]string{"user": "alice", "password": alicePW}, &me)
	if resp.StatusCode != 200 || me.Provider != "ldap" || me.Email != "alice@example.org" || strings.Join(me.Roles, ",") != "admin" {
		t.Fatalf("alice: %d %+v", resp.StatusCode, me)
	}
	if resp := call(t, c, "GET", r.URL+"/api/v1/tokens", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("admin through group: %d", resp.StatusCode)
	}
	bob := jar(t)
	call(t, bob, "POST", r.URL+"/api/v1/login", "", map[string]string{"user": "bob", "password": bobPW}, &me)
	if strings.Join(me.Roles, ",") != "viewer" || strings.Join(me.Groups, ",") != "developers,engineering" {
		t.Fatalf("bob: %+v", me)
	}
	if resp := call(t, bob, "GET", r.URL+"/api/v1/tokens", "", nil, nil); resp.StatusCode != 403 {
		t.Fatalf("viewer lists tokens: %d", resp.StatusCode)
	}
	for _, u := range []string{"*", "*)(uid=*", "alice)(|(uid=*", "alic*"} {
		if resp := call(t, nil, "POST", r.URL+"/api/v1/login", "", map[string]string{"user": u, "password": alicePW}, nil); resp.StatusCode != 401 {
			t.Errorf("injection %q: %d", u, resp.StatusCode)
		}
	}
	s.Stop()
	var e errBody
	resp = call(t, nil, "POST", r.URL+"/api/v1/login", "", map[string]string{"user": "alice", "password": alicePW}, &e)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(e.Error, "unavailable") {
		t.Fatalf("directory down: %d %+v", resp.StatusCode, e)
	}
	// A session made before the outage still works: it is Ops's own.
	if resp := call(t, c, "GET", r.URL+"/api/v1/me", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("session during outage: %d", resp.StatusCode)
	}
	s.Start()
	if resp := call(t, nil, "POST", r.URL+"/api/v1/login", "", map[string]string{"user": "alice", "password": alicePW}, nil); resp.StatusCode != 200 {
		t.Fatalf("after restart: %d", resp.StatusCode)
	}
}
