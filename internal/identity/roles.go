package identity

import (
	"slices"
	"strings"

	"github.com/opsgraph/ops/internal/config"
)

// Permissions are "area:action" strings; a role holds patterns where either
// part may be "*". Every API route declares the one permission it needs.
const (
	// Public marks a route that needs no identity (health, collector, tracker).
	Public = "public"
	// Authenticated marks a route any signed-in identity may use (whoami, logout).
	Authenticated = "authenticated"
)

// readable are the areas a viewer reads. Users, tokens, write keys and
// policy are left out on purpose: who may do what is for admins to see.
var readable = []string{"events:read", "views:read", "graph:read", "aggregates:read", "campaigns:read", "system:read", "metrics:read", "series:read", "analytics:read", "deploy:read", "alert:read", "dns:read", "phish:read"}

// builtin roles: viewer reads data, editor also changes data and the graph,
// admin may do everything, including managing who may do what.
var builtin = map[string][]string{
	"viewer": readable,
	"editor": append(slices.Clone(readable), "events:write", "graph:write", "views:write", "aggregates:write", "campaigns:write", "series:write", "deploy:write", "alert:write", "moderate:write"),
	"admin":  {"*:*"},
}

// Roles resolves identities to roles and roles to permissions.
type Roles struct {
	perms      map[string][]string // role -> patterns, includes expanded
	userGrants map[string][]string // user -> roles
	grpGrants  map[string][]string // group -> roles
}

// NewRoles builds the resolver from config; config validation has already
// checked that every named role exists.
func NewRoles(id config.Identity) *Roles {
	defs := map[string]config.Role{}
	for _, r := range id.Roles {
		defs[r.Name] = r
	}
	r := &Roles{perms: map[string][]string{}, userGrants: map[string][]string{}, grpGrants: map[string][]string{}}
	var expand func(name string, seen map[string]bool) []string
	expand = func(name string, seen map[string]bool) []string {
		if seen[name] {
			return nil // include cycles are harmless: the set is already there
		}
		seen[name] = true
		if p, ok := builtin[name]; ok {
			return p
		}
		d := defs[name]
		out := append([]string(nil), d.Permissions...)
		for _, inc := range d.Include {
			out = append(out, expand(inc, seen)...)
		}
		return out
	}
	for name := range builtin {
		r.perms[name] = builtin[name]
	}
	for name := range defs {
		p := expand(name, map[string]bool{})
		slices.Sort(p)
		r.perms[name] = slices.Compact(p)
	}
	for _, g := range id.Grants {
		for _, u := range g.Users {
			r.userGrants[u] = append(r.userGrants[u], g.Role)
		}
		for _, grp := range g.Groups {
			r.grpGrants[strings.ToLower(grp)] = append(r.grpGrants[strings.ToLower(grp)], g.Role)
		}
	}
	return r
}

// Known reports whether role exists.
func (r *Roles) Known(role string) bool { _, ok := r.perms[role]; return ok }

// Names lists every role, sorted.
func (r *Roles) Names() []string {
	out := make([]string, 0, len(r.perms))
	for n := range r.perms {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Resolve returns own plus the roles granted to the user and their groups
// (group names compare case-insensitively, as directories do), sorted.
func (r *Roles) Resolve(user string, groups, own []string) []string {
	out := append([]string(nil), own...)
	out = append(out, r.userGrants[user]...)
	for _, g := range groups {
		out = append(out, r.grpGrants[strings.ToLower(g)]...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Allows reports whether any of roles grants perm.
func (r *Roles) Allows(roles []string, perm string) bool {
	area, action, _ := strings.Cut(perm, ":")
	for _, role := range roles {
		for _, p := range r.perms[role] {
			pa, pc, _ := strings.Cut(p, ":")
			if (pa == "*" || pa == area) && (pc == "*" || pc == action) {
				return true
			}
		}
	}
	return false
}
