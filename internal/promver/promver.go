// Package promver names the Prometheus release whose TSDB and PromQL the
// binary embeds, without importing Prometheus (so commands that only
// mention it, like ops grafana provision, stay light).
package promver

import (
	"runtime/debug"
	"strings"
)

// Version is the embedded Prometheus release (module v0.316.0 is release
// 3.16.0), or "" when the binary has no time series (-tags notsdb).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path != "github.com/prometheus/prometheus" {
			continue
		}
		v := strings.TrimPrefix(d.Version, "v0.")
		if maj, rest, ok := strings.Cut(v, "."); ok && len(maj) == 3 {
			return maj[:1] + "." + strings.TrimLeft(maj[1:], "0") + "." + rest
		}
	}
	return ""
}
