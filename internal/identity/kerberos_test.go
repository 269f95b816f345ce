package identity_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/client"
	krbconfig "github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/iana/nametype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestKerberos runs SPNEGO against a real MIT KDC with gokrb5's client,
// curl, and hand-made bad tokens.
func TestKerberos(t *testing.T) {
	kdc := testutil.StartKDC(t)
	krb5conf, err := krbconfig.Load(kdc.Krb5Conf)
	if err != nil {
		t.Fatal(err)
	}
	alice := client.NewWithPassword(kdc.User, kdc.Realm, kdc.Password, krb5conf, client.DisablePAFXFAST(true))
	if err := alice.Login(); err != nil {
		t.Fatalf("gokrb5 login as alice: %v", err)
	}
	t.Cleanup(alice.Destroy)
	kt, err := keytab.Load(kdc.Keytab)
	if err != nil {
		t.Fatal(err)
	}
	want := kdc.User + "@" + kdc.Realm

	t.Run("gokrb5 client", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			cfg  config.Kerberos
			want identity.Identity
		}{
			{"any principal in keytab", config.Kerberos{},
				identity.Identity{User: want, Name: "alice", Provider: "kerberos"}},
			{"principal and strip realm", config.Kerberos{Principal: "HTTP/localhost", StripRealm: true},
				identity.Identity{User: "alice", Name: "alice", Provider: "kerberos"}},
			// MIT 1.20 tickets carry a PAC without logon info: no groups, no error.
			{"group SIDs with MIT PAC", config.Kerberos{GroupSIDs: map[string]string{"S-1-5-21-1-512": "admins"}},
				identity.Identity{User: want, Name: "alice", Provider: "kerberos"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				srv := krbServer(t, kdc.Keytab, tc.cfg)
				resp, err := spnego.NewClient(alice, nil, "HTTP/localhost").Get(srv)
				if err != nil {
					t.Fatal(err)
				}
				got := krbIdentity(t, resp)
				if got.User != tc.want.User || got.Name != tc.want.Name || got.Provider != tc.want.Provider || len(got.Groups) != 0 {
					t.Fatalf("identity %+v, want %+v", got, tc.want)
				}
			})
		}
	})

	t.Run("curl", func(t *testing.T) {
		out, err := exec.Command("curl", "-V").Output()
		testutil.Require(t, err == nil && bytes.Contains(out, []byte("SPNEGO")), "curl with SPNEGO", "apt-get install --no-install-recommends curl")
		kdc.Kinit(t)
		srv := krbServer(t, kdc.Keytab, config.Kerberos{Principal: "HTTP/localhost"})
		// -w puts the status after the body; --noproxy keeps an
		// inherited http_proxy from taking the request elsewhere.
		cmd := exec.Command("curl", "-sS", "--negotiate", "-u", ":", "--noproxy", "*",
			"--max-time", "20", "-w", "\n%{http_code}", srv)
		cmd.Env = kdc.Env()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err = cmd.Output()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, stderr.Bytes())
		}
		i := bytes.LastIndexByte(out, '\n')
		body, code := string(out[:max(i, 0)]), string(out[i+1:])
		if code != "200" {
			t.Fatalf("curl got %s: %s %s", code, body, stderr.Bytes())
		}
		var id identity.Identity
		if err := json.Unmarshal([]byte(body), &id); err != nil || id.User != want {
			t.Fatalf("curl body %q (%v), want user %s", body, err, want)
		}
	})

	srv := krbServer(t, kdc.Keytab, config.Kerberos{Principal: "HTTP/localhost"})
	anySrv := krbServer(t, kdc.Keytab, config.Kerberos{})

	t.Run("no Authorization header", func(t *testing.T) {
		for _, h := range []string{"", "Basic YWxpY2U6cHc=", "Bearer x"} {
			code, hdr := krbGet(t, srv, h)
			if code != http.StatusUnauthorized || hdr != "Negotiate" {
				t.Errorf("Authorization %q: %d, WWW-Authenticate %q; want 401 Negotiate", h, code, hdr)
			}
		}
	})

	good := krbHeader(t, alice, "HTTP/localhost")
	t.Run("bad tokens", func(t *testing.T) {
		for _, tc := range []struct{ name, header string }{
			{"no token", "Negotiate"},
			{"blank token", "Negotiate    "},
			{"not base64", "Negotiate !!!not base64!!!"},
			{"not ASN.1", "Negotiate " + base64.StdEncoding.EncodeToString([]byte("hello kerberos"))},
			{"truncated", good[:len(good)/2]},
			{"truncated at end", good[:len(good)-8] + "AAAAAAA="},
			{"flipped byte", krbFlip(t, good, 3*len(good)/4)},
			{"no mech types", "Negotiate " + krbB64(t, &spnego.SPNEGOToken{Init: true})},
			{"no mech token", "Negotiate " + krbB64(t, &spnego.SPNEGOToken{Init: true,
				NegTokenInit: spnego.NegTokenInit{MechTypes: []asn1.ObjectIdentifier{gssapi.OIDKRB5.OID()}}})},
			{"NTLM mech", "Negotiate " + krbB64(t, &spnego.SPNEGOToken{Init: true,
				NegTokenInit: spnego.NegTokenInit{MechTypes: []asn1.ObjectIdentifier{krbNTLMOID}, MechTokenBytes: []byte("NTLMSSP\x00")}})},
			{"KRB-ERROR token", "Negotiate " + krbErrorToken(t)},
			{"oversized", "Negotiate " + strings.Repeat("A", 100<<10)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if code, hdr := krbGet(t, srv, tc.header); code != http.StatusUnauthorized || hdr != "" {
					t.Fatalf("%d, WWW-Authenticate %q; want 401 without a new challenge", code, hdr)
				}
			})
		}
	})

	t.Run("replayed token", func(t *testing.T) {
		h := krbHeader(t, alice, "HTTP/localhost")
		if code, _ := krbGet(t, srv, h); code != http.StatusOK {
			t.Fatalf("first use: %d", code)
		}
		if code, _ := krbGet(t, srv, h); code != http.StatusUnauthorized {
			t.Fatalf("replay: %d, want 401", code)
		}
	})

	t.Run("other service principal", func(t *testing.T) {
		kdc.AddService(t, "HTTP/other")
		for _, s := range []string{srv, anySrv} {
			if code, _ := krbGet(t, s, krbHeader(t, alice, "HTTP/other")); code != http.StatusUnauthorized {
				t.Fatalf("ticket for HTTP/other: %d, want 401", code)
			}
		}
	})

	// Tickets minted with the service key, as the KDC would: the control
	// shows minting works, so the others fail for the reason they name.
	t.Run("minted tickets", func(t *testing.T) {
		now := time.Now()
		for _, tc := range []struct {
			name       string
			authRealm  string
			start, end time.Time
			wantCode   int
		}{
			{"valid control", kdc.Realm, now.Add(-time.Minute), now.Add(time.Hour), http.StatusOK},
			{"expired", kdc.Realm, now.Add(-3 * time.Hour), now.Add(-2 * time.Hour), http.StatusUnauthorized},
			{"not yet valid", kdc.Realm, now.Add(2 * time.Hour), now.Add(3 * time.Hour), http.StatusUnauthorized},
			// gokrb5 takes the client realm from the authenticator and
			// checks only the name against the ticket.
			{"authenticator claims another realm", "EVIL.TEST", now.Add(-time.Minute), now.Add(time.Hour), http.StatusUnauthorized},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h := identity.KerberosMint(t, kt, "alice", kdc.Realm, tc.authRealm, tc.start, tc.end)
				if code, _ := krbGet(t, anySrv, h); code != tc.wantCode {
					t.Fatalf("%d, want %d", code, tc.wantCode)
				}
			})
		}
	})

	t.Run("MIT PAC", func(t *testing.T) {
		// Why gokrb5's PAC decoding is off: this KDC puts a PAC without
		// logon info in every ticket and gokrb5 refuses such a PAC. The
		// "group SIDs with MIT PAC" case shows Verify accepts the ticket.
		tkt, _, err := alice.GetServiceTicket("HTTP/localhost")
		if err != nil {
			t.Fatal(err)
		}
		if err := tkt.DecryptEncPart(kt, nil); err != nil {
			t.Fatal(err)
		}
		isPAC, _, err := tkt.GetPACType(kt, nil, log.New(io.Discard, "", 0))
		switch {
		case !isPAC:
			testutil.Require(t, false, "a KDC that issues a PAC (MIT 1.20 or later)", "apt-get install --no-install-recommends krb5-kdc (Debian 12 has 1.20)")
		case err == nil:
			t.Log("gokrb5 now accepts MIT's PAC; service.DecodePAC(true) may be worth revisiting")
		default:
			t.Logf("gokrb5 on MIT's PAC: %v", err)
		}
	})
}

func TestKerberosNewErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.keytab")
	if _, err := identity.NewKerberos(config.Kerberos{Keytab: missing}, nil); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing keytab: %v", err)
	}
	path := identity.KerberosTestKeytab(t)
	if _, err := identity.NewKerberos(config.Kerberos{Keytab: path, Principal: "HTTP/elsewhere"}, nil); err == nil ||
		!strings.Contains(err.Error(), "HTTP/elsewhere") {
		t.Fatalf("principal not in keytab: %v", err)
	}
	if _, err := identity.NewKerberos(config.Kerberos{Keytab: path, Principal: "HTTP/localhost@OPS.TEST"}, nil); err != nil {
		t.Fatalf("principal with realm: %v", err)
	}
}

// krbServer serves Verify on 127.0.0.1 and returns its URL by the name
// localhost, since HTTP clients derive the service principal from the host.
func krbServer(t *testing.T, keytabPath string, cfg config.Kerberos) string {
	t.Helper()
	cfg.Keytab = keytabPath
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	k, err := identity.NewKerberos(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, tok, err := k.Verify(r)
		switch {
		case errors.Is(err, identity.ErrNoTicket):
			k.Challenge(w)
			http.Error(w, "who are you?", http.StatusUnauthorized)
		case errors.Is(err, identity.ErrInvalid):
			// No new challenge: a client that failed once would only retry
			// the same ticket (gokrb5's client loops on a Negotiate 401).
			http.Error(w, err.Error(), http.StatusUnauthorized)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			if tok != "" {
				w.Header().Set("WWW-Authenticate", "Negotiate "+tok)
			}
			_ = json.NewEncoder(w).Encode(id)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
}

// krbNTLMOID is NTLMSSP's mechanism, which browsers offer when Kerberos fails.
var krbNTLMOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 2, 10}

// krbGet sends one request with the given Authorization header (none if
// empty) and returns the status and WWW-Authenticate header.
func krbGet(t *testing.T, url, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

func krbIdentity(t *testing.T, resp *http.Response) identity.Identity {
	t.Helper()
	defer resp.Body.Close()
	var id identity.Identity
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b.Bytes())
	}
	if err := json.NewDecoder(resp.Body).Decode(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// krbHeader asks the KDC for a ticket to spn and returns a fresh
// "Negotiate <token>" header value.
func krbHeader(t *testing.T, cl *client.Client, spn string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://localhost/", nil)
	if err := spnego.SetSPNEGOHeader(cl, req, spn); err != nil {
		t.Fatalf("ticket for %s: %v", spn, err)
	}
	return req.Header.Get("Authorization")
}

// krbB64 is a SPNEGO token as a Negotiate header carries it.
func krbB64(t testing.TB, st *spnego.SPNEGOToken) string {
	t.Helper()
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// krbFlip corrupts the token byte at about position i of the header.
func krbFlip(t *testing.T, header string, i int) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(header, "Negotiate "))
	if err != nil {
		t.Fatal(err)
	}
	b[i*len(b)/len(header)] ^= 0x5a
	return "Negotiate " + base64.StdEncoding.EncodeToString(b)
}

// krbErrorToken is a GSS Kerberos token carrying a KRB-ERROR, which gokrb5
// verifies as ok with status "unavailable".
func krbErrorToken(t testing.TB) string {
	t.Helper()
	ke := messages.NewKRBError(types.NewPrincipalName(nametype.KRB_NT_SRV_INST, "HTTP/localhost"), "OPS.TEST", 41, "nope")
	kb, err := ke.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	oid, _ := asn1.Marshal(gssapi.OIDKRB5.OID())
	mech := asn1tools.AddASNAppTag(append(append(oid, 0x03, 0x00), kb...), 0)
	return krbB64(t, &spnego.SPNEGOToken{Init: true, NegTokenInit: spnego.NegTokenInit{
		MechTypes: []asn1.ObjectIdentifier{gssapi.OIDKRB5.OID()}, MechTokenBytes: mech,
	}})
}
