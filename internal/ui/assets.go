package ui

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/opsgraph/ops/web"
)

// serveAsset sends a stored encoding of an embedded asset: brotli when the
// client takes it, else gzip, else the plain bytes, each with its own
// strong ETag. URLs carry ?v=<hash>; with the current hash the answer may
// be cached for a year, since a new build changes the URL.
func serveAsset(w http.ResponseWriter, r *http.Request) {
	a := web.Get(r.PathValue("name"))
	if a == nil {
		http.NotFound(w, r)
		return
	}
	body, enc, tag := a.Raw, "", a.Hash
	switch pickEncoding(r.Header.Get("Accept-Encoding")) {
	case "br":
		body, enc, tag = a.Br, "br", a.Hash+"-br"
	case "gzip":
		body, enc, tag = a.Gz, "gzip", a.Hash+"-gz"
	}
	etag := `"` + tag + `"`
	h := w.Header()
	h.Set("Content-Type", a.ContentType)
	h.Set("Vary", "Accept-Encoding")
	h.Set("ETag", etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("v") == a.Hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if enc != "" {
		h.Set("Content-Encoding", enc)
	}
	if matches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// pickEncoding chooses br, gzip or "" (identity) from an Accept-Encoding
// header (RFC 9110 12.5.3): q=0 refuses a coding, * stands for the ones
// not named.
func pickEncoding(header string) string {
	q := map[string]float64{}
	star := -1.0
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		v := 1.0
		for _, p := range strings.Split(params, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
				if err != nil || f < 0 || f > 1 {
					f = 0
				}
				v = f
			}
		}
		if name == "*" {
			star = v
			continue
		}
		if name == "x-gzip" {
			name = "gzip"
		}
		q[name] = v
	}
	weight := func(c string) float64 {
		if v, ok := q[c]; ok {
			return v
		}
		if star >= 0 {
			return star
		}
		return 0
	}
	br, gz := weight("br"), weight("gzip")
	switch {
	case br > 0 && br >= gz:
		return "br"
	case gz > 0:
		return "gzip"
	}
	return ""
}

// matches reports whether an If-None-Match header names etag (weak
// comparison, as RFC 9110 13.1.2 asks for If-None-Match).
func matches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
