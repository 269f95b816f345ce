package enrich

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAnonymizeIP(t *testing.T) {
	tests := []struct {
		name string
		mode string
		in   string // data.context
		want string // data.context after
	}{
		{"IPv4", "", `{"ip":"1.2.3.4"}`, `{"ip":"1.2.3.0"}`},
		{"IPv4 already truncated", "", `{"ip":"203.0.113.0"}`, `{"ip":"203.0.113.0"}`},
		{"IPv6", "", `{"ip":"2001:db8:1234:5678::1"}`, `{"ip":"2001:db8:1234::"}`},
		{"IPv6 upper case", "", `{"ip":"2001:DB8:ABCD:12:FFFF::9"}`, `{"ip":"2001:db8:abcd::"}`},
		{"IPv4-mapped IPv6", "", `{"ip":"::ffff:1.2.3.4"}`, `{"ip":"1.2.3.0"}`},
		{"IPv6 with zone", "", `{"ip":"fe80::1:2:3:4%eth0"}`, `{"ip":"fe80::"}`},
		{"IPv4 with port", "", `{"ip":"1.2.3.4:5678"}`, `{"ip":"1.2.3.0"}`},
		{"IPv6 with port", "", `{"ip":"[2001:db8:1:2::3]:443"}`, `{"ip":"2001:db8:1::"}`},
		{"surrounding spaces", "", `{"ip":" 10.1.2.3 "}`, `{"ip":"10.1.2.0"}`},
		{"invalid is deleted", "", `{"ip":"not-an-ip","locale":"en"}`, `{"locale":"en"}`},
		{"proxy list is deleted", "", `{"ip":"1.2.3.4, 5.6.7.8"}`, `{}`},
		{"empty is deleted", "", `{"ip":""}`, `{}`},
		{"number is deleted", "", `{"ip":16909060}`, `{}`},
		{"object is deleted", "", `{"ip":{"v4":"1.2.3.4"}}`, `{}`},
		{"missing stays missing", "", `{"locale":"en"}`, `{"locale":"en"}`},
		{"drop", "drop", `{"ip":"1.2.3.4","locale":"en"}`, `{"locale":"en"}`},
		{"drop missing", "drop", `{}`, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{}
			if tt.mode != "" {
				opts["mode"] = tt.mode
			}
			obj := decode(t, `{"data":{"context":`+tt.in+`}}`)
			if err := mustNew(t, "anonymize_ip", opts).Enrich(obj); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, obj, `{"data":{"context":`+tt.want+`}}`)
		})
	}
}

func TestAnonymizeIPField(t *testing.T) {
	obj := decode(t, `{"data":{"ip":"198.51.100.77"},"clientip":"198.51.100.77"}`)
	if err := mustNew(t, "anonymize_ip", Options{"field": "clientip"}).Enrich(obj); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, obj, `{"data":{"ip":"198.51.100.77"},"clientip":"198.51.100.0"}`)
}

// wantTruncated is the rule stated independently of truncateIP: the /24 or
// /48 network address of whatever ParseAddr or ParseAddrPort reads.
func wantTruncated(s string) (string, bool) {
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
		if err != nil {
			return "", false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		b[3] = 0
		return netip.AddrFrom4(b).String(), true
	}
	b := ip.As16()
	for i := 6; i < 16; i++ {
		b[i] = 0
	}
	return netip.AddrFrom16(b).String(), true
}

func FuzzAnonymizeIP(f *testing.F) {
	for _, s := range []string{
		"1.2.3.4", "2001:db8:1234:5678::1", "::ffff:1.2.3.4", "fe80::1%eth0", "[::1]:80",
		"1.2.3.4:5678", "", "not-an-ip", "::", "0.0.0.0", "255.255.255.255", "1.2.3.4, 5.6.7.8",
		"\u00a01.2.3.4", "::ffff:0:1.2.3.4",
	} {
		f.Add(s)
	}
	e := mustNew(f, "anonymize_ip", nil)
	f.Fuzz(func(t *testing.T, in string) {
		ctx := map[string]any{"ip": in}
		if err := e.Enrich(map[string]any{"data": map[string]any{"context": ctx}}); err != nil {
			t.Fatal(err)
		}
		out, kept := ctx["ip"]
		want, ok := wantTruncated(in)
		if !kept {
			if ok {
				t.Fatalf("%q deleted, want %q", in, want)
			}
			return
		}
		s, isStr := out.(string)
		if !isStr {
			t.Fatalf("%q became %#v, want a string or nothing", in, out)
		}
		if !ok {
			t.Fatalf("unparseable %q passed through as %q", in, s)
		}
		if s != want {
			t.Fatalf("%q became %q, want %q", in, s, want)
		}
		if _, err := netip.ParseAddr(s); err != nil {
			t.Fatalf("%q became %q, which is not an address", in, s)
		}
	})
}
