package proxy

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/opsgraph/ops/internal/canon"
	"github.com/opsgraph/ops/internal/identity"
)

// What a request is matched on, and what the upstream gets, is decided
// here, once, before anything else looks at the request (docs/proxy.md,
// "Paths and hosts"):
//
//   - the path is canon.Path's canonical form: routes, ACLs, rate limits,
//     policy path blocks and the cache key see it, and the upstream is
//     sent exactly it, so the two cannot read the request differently;
//   - where a permissive upstream could still read it differently (a
//     servlet container drops ;parameters from segments, some servers
//     decode a kept %2F), the alternative reading is decided on too: the
//     route must be the same and both must pass the ACL and path blocks;
//   - the host is canon.Host's form (lower case, IDNA ASCII, no trailing
//     dot), with the port as sent;
//   - headers that only the proxy may set (identity, forwarding, X-Real-IP),
//     in any spelling a CGI-style server would map to the same variable,
//     and Ops's own credentials never reach the upstream.

// canonRequest puts r's path and host in canonical form; alt is the
// alternative reading of the path when it differs, else "".
func (tb *table) canonRequest(r *http.Request) (alt string, err error) {
	raw := r.URL.EscapedPath()
	cp, err := canon.Path(raw, canon.Options{KeepEncodedSlash: tb.keepSlash})
	if err != nil {
		return "", err
	}
	if cp != raw || r.URL.RawPath != "" {
		setPath(r.URL, cp)
	}
	if r.Host != "" {
		host, port, err := canon.Host(r.Host)
		if err != nil {
			return "", err
		}
		if port != "" {
			host = hostPort(host, port)
		}
		r.Host = host
	}
	return altPath(cp), nil
}

// setPath makes u's path the escaped canonical path cp.
func setPath(u *url.URL, cp string) {
	p, err := url.PathUnescape(cp)
	if err != nil {
		p = cp // cannot happen: cp's escapes are well formed
	}
	u.Path, u.RawPath = p, cp
	if u.EscapedPath() == cp && u.Path == cp {
		u.RawPath = ""
	}
}

func hostPort(host, port string) string {
	if strings.IndexByte(host, ':') >= 0 {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// altPath is cp as a permissive upstream might read it: ;parameters
// dropped from every segment, and kept %2F / %5C taken as separators. It
// is "" when that reading is cp itself.
func altPath(cp string) string {
	if strings.IndexByte(cp, ';') < 0 && !strings.Contains(cp, "%2F") && !strings.Contains(cp, "%5C") {
		return ""
	}
	p := strings.NewReplacer("%2F", "/", "%5C", "/").Replace(cp)
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	a, err := canon.Path(strings.Join(segs, "/"), canon.Options{KeepEncodedSlash: true})
	if err != nil || a == cp {
		return ""
	}
	return a
}

// hostOnly is a canonical Host value without its port.
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.LastIndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

// spoofable are the headers only the proxy sets: the identity headers of
// the config and the forwarding headers (lower case, '-' separated).
func spoofable(idHeaders []string) []string {
	s := []string{"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "forwarded", "x-real-ip"}
	for _, h := range idHeaders {
		if h = strings.ToLower(h); !slices.Contains(s, h) {
			s = append(s, h)
		}
	}
	return s
}

// scrub removes from a client request what only the proxy may set: the
// identity headers and X-Real-IP (set again later), and any spelling of
// a proxy-set header with '_' in it. The standard forwarding headers are
// rewritten by the reverse proxy itself.
func (tb *table) scrub(h http.Header) {
	for _, id := range tb.idHeaders {
		delete(h, id)
	}
	delete(h, "X-Real-Ip")
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 && isSpoofable([]byte(k), tb.spoof) {
			delete(h, k)
		}
	}
}

// dropCredentials removes Ops's own credentials before a request goes
// upstream (after sign-in read them): its session cookies, and an
// Authorization that carries an Ops token.
func dropCredentials(h http.Header) {
	if cs := h["Cookie"]; len(cs) > 0 {
		if kept := dropOpsCookies(cs); len(kept) > 0 {
			h["Cookie"] = kept
		} else {
			delete(h, "Cookie")
		}
	}
	if opsCredential(h.Get("Authorization")) {
		delete(h, "Authorization")
	}
}

// dropOpsCookies returns the Cookie header values without Ops's session
// cookies (the others exactly as sent).
func dropOpsCookies(values []string) []string {
	var out []string
	for _, v := range values {
		if !hasOpsCookie(v) {
			out = append(out, v)
			continue
		}
		var kept []string
		for _, c := range strings.Split(v, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(c), "=")
			if !identity.IsSessionCookie(name) {
				kept = append(kept, strings.TrimSpace(c))
			}
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, "; "))
		}
	}
	return out
}

func hasOpsCookie[T string | []byte](v T) bool {
	for i := 0; i+4 <= len(v); i++ {
		if v[i] == 'o' && v[i+1] == 'p' && v[i+2] == 's' && v[i+3] == '_' {
			return true
		}
	}
	return false
}

// opsCredential reports whether an Authorization value carries an Ops API
// token: as a bearer token, or as the password of Basic auth (how
// Grafana sends one).
func opsCredential(v string) bool {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(v), " ")
	cred = strings.TrimSpace(cred)
	switch strings.ToLower(scheme) {
	case "bearer":
		return identity.IsToken(cred)
	case "basic":
		b, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return false
		}
		_, pw, _ := strings.Cut(string(b), ":")
		return identity.IsToken(pw)
	}
	return false
}
