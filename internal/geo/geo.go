// Package geo reads the country of an address from a MaxMind-format
// database (.mmdb): MaxMind's GeoLite2/GeoIP2 Country or City, or DB-IP's
// IP to Country Lite, which share the country.iso_code field.
package geo

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// DB is an open database; safe for concurrent use.
type DB struct {
	r *maxminddb.Reader
}

// Open maps the database at path and checks that it has countries.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, err
	}
	if r.Metadata.IPVersion != 4 && r.Metadata.IPVersion != 6 {
		r.Close()
		return nil, fmt.Errorf("%s: not an IP database (ip_version %d)", path, r.Metadata.IPVersion)
	}
	return &DB{r: r}, nil
}

// Type is the database's type from its metadata, e.g. GeoLite2-Country.
func (d *DB) Type() string { return d.r.Metadata.DatabaseType }

type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	// City databases name the country of registration too; it stands in
	// when the country is unknown (anycast, satellite).
	Registered struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// Country is the ISO 3166-1 alpha-2 code of a's country, "" when the
// database does not know it.
func (d *DB) Country(a netip.Addr) string {
	if d == nil || !a.IsValid() {
		return ""
	}
	var rec record
	if err := d.r.Lookup(a.Unmap()).Decode(&rec); err != nil {
		return ""
	}
	if rec.Country.ISOCode != "" {
		return rec.Country.ISOCode
	}
	return rec.Registered.ISOCode
}

// Close unmaps the database.
func (d *DB) Close() error {
	if d == nil {
		return nil
	}
	return d.r.Close()
}
