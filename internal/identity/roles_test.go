package identity

import (
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"

	"github.com/opsgraph/ops/internal/config"
)

func TestRoles(t *testing.T) {
	id := config.Identity{
		Roles: []config.Role{
			{Name: "analyst", Permissions: config.Strings{"views:read", "series:*"}},
			{Name: "lead", Include: config.Strings{"analyst", "lead"}, Permissions: config.Strings{"graph:write"}}, // a self-include is harmless
		},
		Grants: []config.Grant{
			{Role: "lead", Users: config.Strings{"heidi"}},
			{Role: "admin", Groups: config.Strings{"Domain Admins"}},
		},
	}
	r := NewRoles(id)
	for _, c := range []struct {
		roles []string
		perm  string
		want  bool
	}{
		{[]string{"viewer"}, "events:read", true},
		{[]string{"viewer"}, "events:write", false},
		{[]string{"viewer"}, "users:read", false}, // who may do what is for admins
		{[]string{"viewer"}, "tokens:read", false},
		{[]string{"editor"}, "graph:write", true},
		{[]string{"editor"}, "keys:write", false},
		{[]string{"editor"}, "system:write", false},
		{[]string{"admin"}, "anything:goes", true},
		{[]string{"analyst"}, "series:write", true},
		{[]string{"analyst"}, "events:read", false},
		{[]string{"lead"}, "views:read", true},
		{[]string{"lead"}, "graph:write", true},
		{[]string{"lead"}, "graph:read", false},
		{nil, "views:read", false},
		{[]string{"ghost"}, "views:read", false},
	} {
		if got := r.Allows(c.roles, c.perm); got != c.want {
			t.Errorf("Allows(%v, %s) = %v, want %v", c.roles, c.perm, got, c.want)
		}
	}
	if got := r.Resolve("heidi", []string{"domain admins"}, []string{"viewer"}); !slices.Equal(got, []string{"admin", "lead", "viewer"}) {
		t.Fatalf("Resolve: %v", got)
	}
	if got := r.Resolve("ivan", []string{"Staff"}, nil); len(got) != 0 {
		t.Fatalf("no grants: %v", got)
	}
}

func TestPasswordHashes(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil || !CheckPassword(h, "correct horse") || CheckPassword(h, "correct horsE") {
		t.Fatalf("bcrypt: %v", err)
	}
	if _, err := HashPassword("short"); err == nil {
		t.Fatal("short password accepted")
	}
	// argon2id in the PHC form that the argon2 CLI and libraries print.
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("battery staple"), salt, 2, 19456, 1, 32)
	phc := fmt.Sprintf("$argon2id$v=19$m=19456,t=2,p=1$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	if !CheckPassword(phc, "battery staple") || CheckPassword(phc, "battery stapler") {
		t.Fatal("argon2id")
	}
	for _, bad := range []string{"$argon2id$v=19$m=0,t=2,p=1$AA$AA", "$argon2id$v=18$m=19456,t=2,p=1$AA$AA", "$argon2id$", "plain"} {
		if CheckPassword(bad, "") {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/views?x=1": "/views?x=1", "": "/", "//evil.example": "/", "https://evil.example/": "/",
		`/\evil.example`: "/", "views": "/", "/ok#frag": "/ok#frag",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseCredentials: any login body gives credentials or an error that
// names a field; never a panic, and accepted values respect the limits.
func FuzzParseCredentials(f *testing.F) {
	f.Add("application/json", `{"user":"alice","password":"pw"}`)
	f.Add("application/json", `{"username":"a","password":"p","next":"//x"}`)
	f.Add("application/x-www-form-urlencoded", "user=alice&password=pw&next=%2Fviews")
	f.Add("application/x-www-form-urlencoded", "user=%ZZ")
	f.Add("text/plain", "x")
	f.Add("application/json; charset=utf-8", `[1,2]`)
	f.Fuzz(func(t *testing.T, ct, body string) {
		r := httptest.NewRequest("POST", "/api/v1/login", strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		c, bad := ParseCredentials(r)
		if bad != nil {
			if bad.Field == "" || bad.Error == "" {
				t.Fatalf("error without field: %+v", bad)
			}
			return
		}
		if c.User == "" || c.Password == "" || len(c.User) > 256 || len(c.Password) > 1024 {
			t.Fatalf("accepted %+v", c)
		}
		if !strings.HasPrefix(c.Next, "/") || strings.HasPrefix(c.Next, "//") {
			t.Fatalf("unsafe next %q", c.Next)
		}
	})
}

// FuzzGroupMapping: any identity config that validates builds a resolver
// that never panics, never grants a role nobody named, and whose grants
// match group names case-insensitively.
func FuzzGroupMapping(f *testing.F) {
	f.Add("identity:\n  grants:\n    - role: admin\n      groups: [Ops]\n", "ops")
	f.Add("identity:\n  roles:\n    - name: a\n      include: [b]\n    - name: b\n      include: [a]\n      permissions: ['views:*']\n  grants:\n    - role: a\n      users: [u]\n", "x")
	f.Add("identity:\n  grants:\n    - role: nope\n      groups: [x]\n", "x")
	f.Fuzz(func(t *testing.T, yml, group string) {
		c, err := config.Parse([]byte(yml))
		if err != nil {
			return
		}
		r := NewRoles(c.Identity)
		named := map[string]bool{}
		for _, g := range c.Identity.Grants {
			named[g.Role] = true
		}
		for _, u := range c.Identity.Users {
			for _, role := range u.Roles {
				named[role] = true
			}
		}
		got := r.Resolve("u", []string{group, strings.ToUpper(group)}, nil)
		for _, role := range got {
			if !named[role] {
				t.Fatalf("role %q granted but never named", role)
			}
		}
		lower := strings.Join(r.Resolve("u", []string{strings.ToLower(group)}, nil), ",")
		upper := strings.Join(r.Resolve("u", []string{strings.ToUpper(group)}, nil), ",")
		if lower != upper && strings.EqualFold(strings.ToUpper(group), group) && strings.EqualFold(strings.ToLower(group), group) {
			t.Fatalf("group match depends on case: %q", group)
		}
		for _, role := range got {
			_ = r.Allows([]string{role}, "views:read")
		}
	})
}
