package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RFC 9111 rules for a shared cache, as pure functions of headers and
// times, so the behaviour table can be tested without a network.

// directives parses a Cache-Control header into lower-case names and
// (unquoted) values.
func directives(h http.Header) map[string]string {
	d := map[string]string{}
	for _, line := range h.Values("Cache-Control") {
		for _, part := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			d[name] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return d
}

func seconds(d map[string]string, name string) (time.Duration, bool) {
	v, ok := d[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false // RFC 9111 4.2.1: invalid means stale (0) for max-age; treated as absent here
	}
	if n > 1<<31 {
		n = 1 << 31
	}
	return time.Duration(n) * time.Second, true
}

// heuristicStatus are the codes RFC 9110 15.1 calls heuristically cacheable.
var heuristicStatus = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 308: true, 404: true, 405: true, 410: true, 414: true, 501: true}

// storable decides RFC 9111 section 3 for a shared cache: method GET, no
// no-store on either side, not private, not Vary: *, Authorization only with
// explicit permission, a status understood to be cacheable, and (Ops's own
// rule, as nginx's default) no Set-Cookie, which is per user.
func storable(req *http.Request, resp *http.Response, authed bool) bool {
	if req.Method != http.MethodGet {
		return false
	}
	rq, rs := directives(req.Header), directives(resp.Header)
	if _, ok := rq["no-store"]; ok {
		return false
	}
	if _, ok := rs["no-store"]; ok {
		return false
	}
	if _, ok := rs["private"]; ok {
		return false
	}
	if resp.Header.Get("Set-Cookie") != "" {
		return false
	}
	for _, v := range resp.Header.Values("Vary") {
		if strings.Contains(v, "*") {
			return false
		}
	}
	// A signed-in user's response (identity headers upstream) is treated
	// like one to a request with Authorization.
	if req.Header.Get("Authorization") != "" || authed {
		_, pub := rs["public"]
		_, smax := rs["s-maxage"]
		_, mr := rs["must-revalidate"]
		if !pub && !smax && !mr {
			return false
		}
	}
	explicit := false
	for _, k := range []string{"max-age", "s-maxage", "public"} {
		if _, ok := rs[k]; ok {
			explicit = true
		}
	}
	if resp.Header.Get("Expires") != "" {
		explicit = true
	}
	if _, ok := rs["no-cache"]; ok {
		explicit = true // stored, but always revalidated
	}
	if heuristicStatus[resp.StatusCode] {
		return explicit || resp.Header.Get("Last-Modified") != ""
	}
	return false
}

// freshness is RFC 9111 4.2.1: s-maxage, max-age, Expires - Date, or a
// heuristic of 10% of the time since Last-Modified (capped at a day).
func freshness(h http.Header, date time.Time) time.Duration {
	d := directives(h)
	if _, ok := d["no-cache"]; ok {
		return 0
	}
	if v, ok := seconds(d, "s-maxage"); ok {
		return v
	}
	if v, ok := seconds(d, "max-age"); ok {
		return v
	}
	if e := h.Get("Expires"); e != "" {
		t, err := http.ParseTime(e)
		if err != nil {
			return 0 // an invalid Expires means already expired
		}
		return max(t.Sub(date), 0)
	}
	if lm, err := http.ParseTime(h.Get("Last-Modified")); err == nil && lm.Before(date) {
		return min(date.Sub(lm)/10, 24*time.Hour)
	}
	return 0
}

// responseDate is the Date header, or the time the response arrived.
func responseDate(h http.Header, arrived time.Time) time.Time {
	if t, err := http.ParseTime(h.Get("Date")); err == nil {
		return t
	}
	return arrived
}

// initialAge is RFC 9111 4.2.3's corrected_initial_age.
func initialAge(h http.Header, requested, arrived time.Time) time.Duration {
	var ageValue time.Duration
	if n, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && n >= 0 {
		ageValue = time.Duration(n) * time.Second
	}
	apparent := max(arrived.Sub(responseDate(h, arrived)), 0)
	corrected := ageValue + arrived.Sub(requested)
	return max(apparent, corrected)
}

// verdict is what to do with a stored response for a request.
type verdict int

const (
	serveFresh     verdict = iota // fresh: serve it
	serveStale                    // stale within stale-while-revalidate: serve, refresh behind
	mustRevalidate                // ask the upstream (conditionally)
)

// judge applies freshness and the request's own directives.
func judge(req *http.Request, stored http.Header, age, lifetime time.Duration) verdict {
	rq := directives(req.Header)
	rs := directives(stored)
	if _, ok := rq["no-cache"]; ok {
		return mustRevalidate
	}
	if strings.Contains(strings.ToLower(req.Header.Get("Pragma")), "no-cache") && req.Header.Get("Cache-Control") == "" {
		return mustRevalidate
	}
	if v, ok := seconds(rq, "max-age"); ok && age > v {
		return mustRevalidate
	}
	if age < lifetime {
		if v, ok := seconds(rq, "min-fresh"); ok && lifetime-age < v {
			return mustRevalidate
		}
		return serveFresh
	}
	_, mr := rs["must-revalidate"]
	_, pr := rs["proxy-revalidate"]
	_, smax := rs["s-maxage"]
	if mr || pr || smax { // s-maxage implies proxy-revalidate for shared caches
		return mustRevalidate
	}
	if v, ok := seconds(rs, "stale-while-revalidate"); ok && age < lifetime+v {
		return serveStale
	}
	return mustRevalidate
}

// staleIfError reports whether a stale response may be served because
// the upstream failed (RFC 5861).
func staleIfError(req *http.Request, stored http.Header, age, lifetime time.Duration) bool {
	rs := directives(stored)
	if _, ok := rs["must-revalidate"]; ok {
		return false
	}
	if v, ok := seconds(rs, "stale-if-error"); ok && age < lifetime+v {
		return true
	}
	if v, ok := seconds(directives(req.Header), "stale-if-error"); ok && age < lifetime+v {
		return true
	}
	return false
}
