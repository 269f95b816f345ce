package event

import "strings"

// reserved are the event domains (the first token of a type) that Ops's
// own modules emit, or that steer Ops: the public publish paths (POST
// /api/v1/events, processors created through the API) refuse them
// unless the caller holds the permission given here, and a processor's
// computed output subject never lands in one. A forged ev.policy.set
// would lock users or open maintenance mode; a forged ev.auth.* or
// ev.view.* would rewrite the audit trail or feed the graph's own
// decisions. Tracking (track.*) and OTLP (otel.*) are left open: they are
// clients' data, which any write key sends anyway.
var reserved = map[string]string{
	"policy":     "policy:write",
	"auth":       "auth:write",
	"view":       "view:write",
	"deadletter": "deadletter:write",
	"agg":        "agg:write",
	"proxy":      "proxy:write",
	"dns":        "dns:write",
	"outreach":   "outreach:write",
	"deploy":     "deploy:write",
	"alert":      "alert:write",
	"continuity": "continuity:write",
	"flag":       "flag:write",
	"sql":        "sql:write",
	"forum":      "forum:write",
}

// Reserved returns the permission that publishing an event of type typ
// needs beyond events:write, when its domain is reserved.
func Reserved(typ string) (perm string, ok bool) {
	domain, _, _ := strings.Cut(typ, ".")
	perm, ok = reserved[domain]
	return perm, ok
}

// ReservedDomains lists the reserved domains with their permissions, for
// documentation and error messages.
func ReservedDomains() map[string]string {
	out := make(map[string]string, len(reserved))
	for k, v := range reserved {
		out[k] = v
	}
	return out
}
