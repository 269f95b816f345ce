package forward_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestProxyAuthDirectory: the forward proxy's sign-in against the real
// directory services: Kerberos (curl --proxy-negotiate with a ticket
// from the test KDC, for the HTTP/localhost principal the keytab holds)
// and LDAP (Basic checked by a bind to slapd, the user's directory groups
// deciding a group rule).
func TestProxyAuthDirectory(t *testing.T) {
	out, err := exec.Command("curl", "-V").Output()
	testutil.Require(t, err == nil && bytes.Contains(out, []byte("SPNEGO")), "curl with SPNEGO", "apt-get install --no-install-recommends curl")
	kdc := testutil.StartKDC(t)
	const people, groups = "ou=people,dc=example,dc=org", "ou=groups,dc=example,dc=org"
	slapd := testutil.StartSlapd(t, fmt.Sprintf(`dn: %[1]s
objectClass: organizationalUnit
ou: people

dn: %[2]s
objectClass: organizationalUnit
ou: groups

dn: cn=svc,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: svc
userPassword: svc-secret

dn: uid=dora,%[1]s
objectClass: inetOrgPerson
uid: dora
cn: Dora
sn: Dora
userPassword: dora-pw-1

dn: uid=evan,%[1]s
objectClass: inetOrgPerson
uid: evan
cn: Evan
sn: Evan
userPassword: evan-pw-1

dn: cn=interns,%[2]s
objectClass: groupOfNames
cn: interns
member: uid=evan,%[1]s
`, people, groups))
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.Header.Get("Proxy-Authorization"))
	}))
	t.Cleanup(site.Close)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Identity.Kerberos = config.Kerberos{Keytab: kdc.Keytab, StripRealm: true}
		c.Identity.Providers = config.Strings{"local", "ldap"}
		c.Identity.LDAP = config.LDAP{URL: slapd.URL, BindDN: "cn=svc,dc=example,dc=org", BindPassword: "svc-secret", BaseDN: people,
			UserFilter: "(uid={user})", GroupBaseDN: groups, GroupFilter: "(member={dn})", NameAttr: "cn", GroupNameAttr: "cn",
			Timeout: config.Duration(5 * time.Second), PoolSize: 2}
		f := &c.Proxy.Forward
		f.Listen, f.Auth = "127.0.0.1:0", "basic"
		f.DenyNetworks, f.DenyOwn = nil, false
		f.Rules = []config.ForwardRule{{Name: "no-site-for-interns", Hosts: config.Strings{"127.0.0.1"}, Groups: config.Strings{"interns"}, Action: "block"}}
	})
	_, port, _ := net.SplitHostPort(r.App.Forward().Addr().String())
	proxyURL := "http://localhost:" + port // the name the service principal is for

	// Kerberos: a 407 offers Negotiate; curl answers with alice's ticket.
	pc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "127.0.0.1:" + port})}}
	resp, err := pc.Get(site.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 407 || strings.Join(resp.Header.Values("Proxy-Authenticate"), ",") != `Negotiate,Basic realm="Ops proxy", charset="UTF-8"` {
		t.Fatalf("challenge: %d %v", resp.StatusCode, resp.Header.Values("Proxy-Authenticate"))
	}
	kdc.Kinit(t)
	cmd := exec.Command("curl", "-sS", "--max-time", "10", "--proxy-negotiate", "-U", ":", "-x", proxyURL, "-w", " %{http_code}", site.URL+"/")
	cmd.Env = kdc.Env()
	got, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(string(got), " 200") || strings.Contains(string(got), "Negotiate") {
		t.Fatalf("curl --proxy-negotiate: %v %s", err, got)
	}
	// LDAP: dora may, evan (in interns) may not; a wrong password is 407.
	for _, c := range []struct {
		user, pw string
		want     int
	}{{"dora", "dora-pw-1", 200}, {"evan", "evan-pw-1", 403}, {"dora", "wrong", 407}} {
		u := &url.URL{Scheme: "http", Host: "127.0.0.1:" + port, User: url.UserPassword(c.user, c.pw)}
		cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
		if code, body, _ := get(t, cl, site.URL+"/"); code != c.want {
			t.Fatalf("%s: %d %s, want %d", c.user, code, body, c.want)
		}
	}
	testutil.CheckFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		resp, err := http.Get(r.URL + "/api/v1/events?subject=ev.proxy.browse&limit=50")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, want := range []string{`"user":"alice","client":"127.0.0.0","method":"GET"`, `"user":"dora"`, `"user":"evan","client":"127.0.0.0","method":"GET","host":"127.0.0.1"`, `"rule":"no-site-for-interns"`} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("no %s in %s", want, b)
			}
		}
		return nil
	})
}
