package geo_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/opsgraph/ops/internal/geo"
	"github.com/opsgraph/ops/internal/testutil"
)

func TestCountry(t *testing.T) {
	path := testutil.WriteCountryDB(t, map[string]string{"81.2.69.0/24": "GB", "2a02:8100::/32": "DE", "127.0.0.0/8": "ZZ"})
	db, err := geo.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for addr, want := range map[string]string{
		"81.2.69.142": "GB", "::ffff:81.2.69.1": "GB", "2a02:8100:1::1": "DE", "127.0.0.1": "ZZ",
		"81.2.70.1": "", "192.0.2.1": "", "::1": "",
	} {
		if got := db.Country(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
	if db.Country(netip.Addr{}) != "" {
		t.Error("the zero address has a country")
	}
	if db.Type() != "GeoLite2-Country" {
		t.Errorf("type %q", db.Type())
	}
}

func TestOpenBad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.mmdb")
	os.WriteFile(p, []byte("not a database"), 0o644)
	if _, err := geo.Open(p); err == nil {
		t.Fatal("a text file opened as a database")
	}
	if _, err := geo.Open(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Fatal("a missing file opened")
	}
}

// FuzzOpen: a damaged database file is an error or a database that
// answers, never a crash.
func FuzzOpen(f *testing.F) {
	good, _ := os.ReadFile(testutil.WriteCountryDB(f, map[string]string{"81.2.69.0/24": "GB"}))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.mmdb")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := geo.Open(p)
		if err != nil {
			return
		}
		defer db.Close()
		db.Country(netip.MustParseAddr("81.2.69.142"))
		db.Country(netip.MustParseAddr("2001:db8::1"))
	})
}
