package identity

// This file is in package identity, not identity_test like the end-to-end
// tests, because the fuzz target must tell a recovered decoder panic from an
// ordinary refusal and the unit tests reach unexported helpers; the
// end-to-end tests cannot be here, as testutil imports the app and so this
// package.

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/iana/etypeID"
	"github.com/jcmturner/gokrb5/v8/iana/nametype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/test/testdata"
	"github.com/jcmturner/gokrb5/v8/types"

	"github.com/opsgraph/ops/internal/config"
)

// FuzzNegotiateHeader feeds arbitrary Authorization values to Verify. None
// may crash the decoder; anything but a ticket minted with the service key,
// seen for the first time, must be refused.
func FuzzNegotiateHeader(f *testing.F) {
	path := KerberosTestKeytab(f)
	kt, err := keytab.Load(path)
	if err != nil {
		f.Fatal(err)
	}
	k, err := NewKerberos(config.Kerberos{Keytab: path, GroupSIDs: map[string]string{"S-1-5-21-1-512": "admins"}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	good := KerberosMint(f, kt, "alice", "OPS.TEST", "OPS.TEST", now.Add(-time.Minute), now.Add(24*time.Hour))
	expired := KerberosMint(f, kt, "alice", "OPS.TEST", "OPS.TEST", now.Add(-2*time.Hour), now.Add(-time.Hour))
	emptyInit, _ := (&spnego.SPNEGOToken{Init: true}).Marshal()
	for _, s := range []string{
		"", "Negotiate", "Negotiate ", "negotiate YQ==", "Basic YWxpY2U6cHc=", "Negotiate !!!",
		"Negotiate " + base64.StdEncoding.EncodeToString(emptyInit),
		"Negotiate oQcwBaADCgEC", // NegTokenResp reject, as a server sends it
		good, expired, good[:len(good)/2],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", h)
		id, _, err := k.Verify(r)
		switch {
		case errors.Is(err, errTokenPanic):
			t.Fatalf("decoder panicked on %q", h)
		case err == nil:
			// Only tokens minted with the key verify (the key is derived
			// from a fixed password, so fuzz workers accept one another's
			// seeds), they name alice, and never twice.
			if id.User != "alice@OPS.TEST" {
				t.Fatalf("%q verified as %+v", h, id)
			}
			if _, _, err := k.Verify(r); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q verified twice (replay): %v", h, err)
			}
		case !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNoTicket):
			t.Fatalf("%q: error %v wraps neither ErrInvalid nor ErrNoTicket", h, err)
		case errors.Is(err, ErrNoTicket) && len(h) > len("Negotiate") && strings.EqualFold(h[:len("Negotiate ")], "Negotiate "):
			t.Fatalf("%q carries a token but got ErrNoTicket", h)
		}
	})
}

var krbDiscardLog = log.New(io.Discard, "", 0)

func TestGroupsFromSIDs(t *testing.T) {
	m := map[string]string{
		"S-1-5-21-1-512":  "admins",
		"S-1-5-21-1-513":  "users",
		"S-1-5-21-1-1105": "users", // two SIDs, one name
		"S-1-5-21-1-9999": "",      // an empty name maps to nothing
	}
	for _, tc := range []struct {
		name string
		sids []string
		m    map[string]string
		want []string
	}{
		{"none", nil, m, []string{}},
		{"unmapped dropped", []string{"S-1-5-21-1-1", "S-1-5-32-544"}, m, []string{}},
		{"sorted", []string{"S-1-5-21-1-513", "S-1-5-21-1-512"}, m, []string{"admins", "users"}},
		{"deduped", []string{"S-1-5-21-1-513", "S-1-5-21-1-1105", "S-1-5-21-1-513"}, m, []string{"users"}},
		{"empty name", []string{"S-1-5-21-1-9999"}, m, []string{}},
		{"no map", []string{"S-1-5-21-1-512"}, nil, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := groupsFromSIDs(tc.sids, tc.m)
			if got == nil || !slices.Equal(got, tc.want) {
				t.Fatalf("groupsFromSIDs(%v) = %#v, want %#v", tc.sids, got, tc.want)
			}
		})
	}
}

// TestKerberosPACLogonInfo decodes gokrb5's Active Directory PAC test vector
// (no AD here) with our tolerant decoder: groups come out, and a wrong
// service key is refused.
func TestKerberosPACLogonInfo(t *testing.T) {
	b, _ := hex.DecodeString(testdata.MarshaledPAC_AD_WIN2K_PAC)
	ktb, _ := hex.DecodeString(testdata.KEYTAB_SYSHTTP_TEST_GOKRB5)
	kt := keytab.New()
	if err := kt.Unmarshal(ktb); err != nil {
		t.Fatal(err)
	}
	pn, _ := types.ParseSPNString("sysHTTP")
	key, _, err := kt.GetEncryptionKey(pn, "TEST.GOKRB5", 2, etypeID.AES256_CTS_HMAC_SHA1_96)
	if err != nil {
		t.Fatal(err)
	}
	info, err := pacLogonInfo(b, key, krbDiscardLog)
	if err != nil || info == nil {
		t.Fatalf("pacLogonInfo: %v, %v", info, err)
	}
	sids := info.GetGroupMembershipSIDs()
	m := map[string]string{sids[0]: "domain users", sids[len(sids)-1]: "last", "S-1-1-0": "everyone"}
	if got := groupsFromSIDs(sids, m); !slices.Equal(got, []string{"domain users", "last"}) {
		t.Fatalf("groups = %v from SIDs %v", got, sids)
	}
	if info.FullName.Value != "Test1 User1" {
		t.Errorf("full name %q", info.FullName.Value)
	}
	key.KeyValue = bytes.Repeat([]byte{1}, len(key.KeyValue))
	if _, err := pacLogonInfo(b, key, krbDiscardLog); err == nil {
		t.Fatal("PAC verified with the wrong service key")
	}
	// A PAC as MIT issues it: no logon info buffer, so no groups, no error.
	mit := []byte{1, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0}
	if info, err := pacLogonInfo(mit, key, krbDiscardLog); info != nil || err != nil {
		t.Fatalf("MIT-style PAC: %v, %v", info, err)
	}
}

// KerberosMint makes a ticket for HTTP/localhost with the service key in kt,
// as a KDC would, and returns a Negotiate header whose authenticator names
// user@authRealm. Exported for the end-to-end tests in identity_test.
func KerberosMint(t testing.TB, kt *keytab.Keytab, user, realm, authRealm string, start, end time.Time) string {
	t.Helper()
	sname := types.NewPrincipalName(nametype.KRB_NT_SRV_INST, "HTTP/localhost")
	kvno, etype := 0, int32(0) // the newest key, as the KDC would use
	for _, e := range kt.Entries {
		if int(e.KVNO) > kvno || int(e.KVNO) == kvno && e.Key.KeyType > etype {
			kvno, etype = int(e.KVNO), e.Key.KeyType
		}
	}
	tkt, key, err := messages.NewTicket(types.NewPrincipalName(nametype.KRB_NT_PRINCIPAL, user), realm, sname, realm,
		types.NewKrbFlags(), kt, etype, kvno, start, start, end, end)
	if err != nil {
		t.Fatal(err)
	}
	cl := client.NewWithPassword(user, authRealm, "unused", nil) // only its name is used
	nti, err := spnego.NewNegTokenInitKRB5(cl, tkt, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&spnego.SPNEGOToken{Init: true, NegTokenInit: nti}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return "Negotiate " + base64.StdEncoding.EncodeToString(b)
}

// KerberosTestKeytab writes a keytab for HTTP/localhost@OPS.TEST derived
// from a fixed password, for tests that need no KDC.
func KerberosTestKeytab(t testing.TB) string {
	t.Helper()
	kt := keytab.New()
	for _, et := range []int32{etypeID.AES256_CTS_HMAC_SHA1_96, etypeID.AES128_CTS_HMAC_SHA1_96} {
		if err := kt.AddEntry("HTTP/localhost", "OPS.TEST", "service-Secret-1", time.Now(), 1, et); err != nil {
			t.Fatal(err)
		}
	}
	b, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "http.keytab")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
