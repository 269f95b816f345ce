package webfilter

import (
	"net/http"
	"strings"
)

// SafeSearchHost is where a tunnel to host goes when safe search is
// enforced: the engines' own enforcement addresses, the ones their
// DNS-based enforcement documents (forcesafesearch.google.com,
// strict.bing.com, safe.duckduckgo.com, restrict.youtube.com). They
// serve the same certificates as the engines' own names, so the browser
// sees nothing but filtered results. "" when host is not a search engine.
func SafeSearchHost(host string) string {
	switch {
	case isGoogle(host):
		return "forcesafesearch.google.com"
	case host == "bing.com" || host == "www.bing.com":
		return "strict.bing.com"
	case host == "duckduckgo.com" || host == "www.duckduckgo.com" || host == "start.duckduckgo.com":
		return "safe.duckduckgo.com"
	case host == "www.youtube.com" || host == "m.youtube.com" || host == "youtube.com" ||
		host == "youtubei.googleapis.com" || host == "youtube.googleapis.com" || host == "www.youtube-nocookie.com":
		return "restrict.youtube.com"
	}
	return ""
}

// SafeSearchRequest rewrites a plain (or intercepted) request to a
// search engine so the engine filters its results: Google safe=active,
// Bing adlt=strict, DuckDuckGo kp=1, Yahoo vm=r, YouTube's
// YouTube-Restrict: Strict header. It reports whether it changed r.
func SafeSearchRequest(r *http.Request) bool {
	host, err := CanonHost(r.URL.Hostname())
	if err != nil {
		return false
	}
	set := func(k, v string) bool {
		q := r.URL.Query()
		if q.Get(k) == v && len(q[k]) == 1 {
			return false
		}
		q.Set(k, v)
		r.URL.RawQuery = q.Encode()
		return true
	}
	switch {
	case isGoogle(host):
		return set("safe", "active")
	case host == "bing.com" || strings.HasSuffix(host, ".bing.com"):
		return set("adlt", "strict")
	case host == "duckduckgo.com" || strings.HasSuffix(host, ".duckduckgo.com"):
		return set("kp", "1")
	case strings.HasSuffix(host, "search.yahoo.com"):
		return set("vm", "r")
	case isYouTube(host) || host == "www.youtube-nocookie.com":
		r.Header.Set("YouTube-Restrict", "Strict")
		return true
	}
	return false
}
