package identity_test

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jcmturner/gokrb5/v8/client"
	krbconfig "github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestSSO signs in to a running Ops through SPNEGO: curl --negotiate with a
// kinit ticket follows /login/sso to the API with a session cookie, and
// gokrb5's client calls the API with Negotiate directly.
func TestSSO(t *testing.T) {
	kdc := testutil.StartKDC(t)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Identity.Kerberos = config.Kerberos{Keytab: kdc.Keytab, Principal: "HTTP/localhost"}
		c.Identity.Grants = []config.Grant{{Role: "viewer", Users: config.Strings{kdc.User + "@" + kdc.Realm}}}
	})
	// localhost, not 127.0.0.1: the ticket is for HTTP/localhost.
	base := strings.Replace(r.URL, "127.0.0.1", "localhost", 1)

	t.Run("browser without a ticket gets Negotiate and the form", func(t *testing.T) {
		resp := call(t, nil, "GET", base+"/login/sso?next=/api/v1/me", "", nil, nil)
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Negotiate" || !strings.Contains(bodyOf(resp), `name="password"`) {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
		if page := bodyOf(call(t, nil, "GET", base+"/login", "", nil, nil)); !strings.Contains(page, "/login/sso") {
			t.Fatal("login page offers no Kerberos sign-in")
		}
		resp = call(t, nil, "GET", base+"/api/v1/me", "", nil, nil)
		if resp.StatusCode != 401 || !strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), ","), "Negotiate") {
			t.Fatalf("API challenge: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("kinit and curl --negotiate", func(t *testing.T) {
		v, err := exec.Command("curl", "-V").Output()
		testutil.Require(t, err == nil && strings.Contains(string(v), "SPNEGO"), "curl with SPNEGO", "apt-get install --no-install-recommends curl")
		kdc.Kinit(t)
		jarFile := filepath.Join(t.TempDir(), "cookies")
		cmd := exec.Command("curl", "-sS", "-f", "--negotiate", "-u", ":", "--noproxy", "*", "-L", "-c", jarFile, "-b", jarFile,
			base+"/login/sso?next=/api/v1/me")
		cmd.Env = kdc.Env()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
		var me struct {
			User, Provider string
			Roles          []string
		}
		if err := json.Unmarshal(out, &me); err != nil || me.User != "alice@OPS.TEST" || me.Provider != "kerberos" || len(me.Roles) != 1 || me.Roles[0] != "viewer" {
			t.Fatalf("me: %v %s", err, out)
		}
		// The session cookie alone now works, with no ticket.
		cmd = exec.Command("curl", "-sS", "-f", "--noproxy", "*", "-b", jarFile, base+"/api/v1/views")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cookie after SSO: %v %s", err, out)
		}
	})

	t.Run("gokrb5 client on the API", func(t *testing.T) {
		conf, err := krbconfig.Load(kdc.Krb5Conf)
		if err != nil {
			t.Fatal(err)
		}
		alice := client.NewWithPassword(kdc.User, kdc.Realm, kdc.Password, conf, client.DisablePAFXFAST(true))
		if err := alice.Login(); err != nil {
			t.Fatal(err)
		}
		defer alice.Destroy()
		c := spnego.NewClient(alice, &http.Client{Transport: testutil.Anonymous.Transport}, "HTTP/localhost")
		resp, err := c.Get(base + "/api/v1/views")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// API calls negotiate each time; they leave no session behind.
		if resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("negotiate: %d %v", resp.StatusCode, resp.Header)
		}
		// A viewer may not write.
		req, _ := http.NewRequest("POST", base+"/api/v1/events", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("viewer write via Negotiate: %d", resp.StatusCode)
		}
	})
}
