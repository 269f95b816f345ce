package canon

import (
	"net/url"
	"path"
	"strings"
)

// Lenient reads a path as the most permissive upstream would: every escape
// decoded once, '\' taken as '/', ;parameters dropped from segments (as
// servlet containers do), then cleaned. It is the independent reference
// the differential fuzz tests hold Path, and the proxy's decisions, to:
// whatever the proxy lets through must not read, this way, as a path it
// denies.
func Lenient(p string) string {
	d, err := url.PathUnescape(p)
	if err != nil {
		d = p
	}
	d = strings.ReplaceAll(d, "\\", "/")
	segs := strings.Split(d, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	return path.Clean("/" + strings.Join(segs, "/"))
}
