package canon

import (
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/", "/"},
		{"/admin/x", "/admin/x"},
		{"//admin/x", "/admin/x"},
		{"/admin//x//", "/admin/x/"},
		{"/./admin/x", "/admin/x"},
		{"/x/../admin/x", "/admin/x"},
		{"/x/../../../admin", "/admin"},
		{"/%2e/admin/x", "/admin/x"},
		{"/%2E%2E/admin", "/admin"},
		{"/x/%2e%2e/admin", "/admin"},
		{"/%61dmin", "/admin"},
		{"/a%7eb", "/a~b"},
		{"/a%2db%5fc", "/a-b_c"},
		{"/a%20b", "/a%20b"},
		{"/a%3fb", "/a%3Fb"},
		{"/a b", "/a%20b"},
		{"/caf\xc3\xa9", "/caf%C3%A9"},
		{"/a/.", "/a/"},
		{"/a/..", "/"},
		{"/a/b/..", "/a/"},
		{"/a/...", "/a/..."},
		{"/a;v=1/b", "/a;v=1/b"},
		{"/a/b;x", "/a/b;x"},
		{"/<script>", "/%3Cscript%3E"},
		{"/a:b@c", "/a:b@c"},
	} {
		got, err := Path(c.in, Options{})
		if err != nil || got != c.want {
			t.Errorf("Path(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if again, err := Path(got, Options{}); err != nil || again != got {
			t.Errorf("Path(Path(%q)) = %q, %v; not idempotent", c.in, again, err)
		}
	}
	for _, c := range []struct {
		in  string
		err error
	}{
		{"", ErrNotOrigin},
		{"*", ErrNotOrigin},
		{"admin", ErrNotOrigin},
		{"/admin%2Fx", ErrEncodedSlash},
		{"/admin%2fx", ErrEncodedSlash},
		{"/admin%5cx", ErrEncodedSlash},
		{"/admin\\x", ErrBackslash},
		{"/a%00", ErrNUL},
		{"/a%zz", ErrBadEscape},
		{"/a%2", ErrBadEscape},
		{"/public/..;/admin", ErrDotParameters},
		{"/public/.;x/admin", ErrDotParameters},
		{"/public/%2e%2e;/admin", ErrDotParameters},
	} {
		if got, err := Path(c.in, Options{}); err != c.err {
			t.Errorf("Path(%q) = %q, %v; want %v", c.in, got, err, c.err)
		}
	}
	if got, err := Path("/a%2fb%5C", Options{KeepEncodedSlash: true}); err != nil || got != "/a%2Fb%5C" {
		t.Errorf("kept slashes: %q %v", got, err)
	}
}

func TestIsCanonical(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/a": true, "/a/": true, "/a/b.css": true, "/a;b": true,
		"//": false, "/a//b": false, "/./a": false, "/a/..": false, "/a/.;x/b": false, "/a%20": false, "/a b": false, "": false, "a": false,
	} {
		if IsCanonical(p) != want {
			t.Errorf("IsCanonical(%q) = %v", p, !want)
		}
	}
}

func TestHost(t *testing.T) {
	for _, c := range []struct{ in, host, port string }{
		{"example.com", "example.com", ""},
		{"Example.COM:8080", "example.com", "8080"},
		{"auth.local.", "auth.local", ""},
		{"auth.local.:80", "auth.local", "80"},
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"BÜCHER.example.", "xn--bcher-kva.example", ""},
		{"[2001:DB8::1]:443", "2001:db8::1", "443"},
		{"192.0.2.1:80", "192.0.2.1", "80"},
		{"my_service:3000", "my_service", "3000"},
	} {
		h, p, err := Host(c.in)
		if err != nil || h != c.host || p != c.port {
			t.Errorf("Host(%q) = %q %q %v; want %q %q", c.in, h, p, err, c.host, c.port)
		}
	}
	for _, bad := range []string{"a..b", ".", "ex ample.com", "a:b:c", "[::1", "[::1]x", "example.com:80x", "[192.0.2.1]"} {
		if h, _, err := Host(bad); err == nil {
			t.Errorf("Host(%q) = %q, want an error", bad, h)
		}
	}
}

// FuzzPath: Path is idempotent, its output is canonical by IsCanonical's
// test or escapes only what must stay escaped, and it never turns a path
// into one that the reference reads differently from the input (with
// ;parameters set aside: they are the caller's to check).
func FuzzPath(f *testing.F) {
	for _, s := range []string{"/", "//admin/x", "/x/../admin", "/%2e/admin", "/a%2Fb", "/a;b/../c", "/caf\xc3\xa9", "/a/%2e%2e;/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := Path(p, Options{})
		if err != nil {
			return
		}
		again, err := Path(got, Options{})
		if err != nil || again != got {
			t.Fatalf("Path(%q) = %q, then %q %v", p, got, again, err)
		}
		if strings.Contains(got, "//") || strings.Contains(got+"/", "/./") || strings.Contains(got+"/", "/../") {
			t.Fatalf("Path(%q) = %q keeps an empty or dot segment", p, got)
		}
		if !strings.Contains(p, ";") {
			if r1, r2 := Lenient(p), Lenient(got); r1 != r2 {
				t.Fatalf("Path(%q) = %q: the reference reads %q before and %q after", p, got, r1, r2)
			}
		}
	})
}

func FuzzHost(f *testing.F) {
	for _, s := range []string{"example.com", "Example.COM.:80", "bücher.example", "[::1]:8080", "a_b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, p, err := Host(s)
		if err != nil || h == "" {
			return
		}
		hp := h
		if strings.Contains(h, ":") {
			hp = "[" + h + "]"
		}
		if p != "" {
			hp += ":" + p
		}
		h2, p2, err := Host(hp)
		if err != nil || h2 != h || p2 != p {
			t.Fatalf("Host(%q) = %q %q, then %q %q %v", s, h, p, h2, p2, err)
		}
	})
}
