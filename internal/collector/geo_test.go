package collector_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/collector"
	"github.com/opsgraph/ops/internal/config"
)

// TestGeoIPConfig: a database that is missing or not a database stops the
// start with an error naming the key.
func TestGeoIPConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.mmdb")
	os.WriteFile(bad, []byte("GeoLite2 in name only"), 0o644)
	for _, p := range []string{filepath.Join(t.TempDir(), "missing.mmdb"), bad} {
		_, err := collector.New(config.Collector{GeoIP: p}, collector.Deps{Handle: func(string, string, http.Handler) {}})
		if err == nil || !strings.Contains(err.Error(), "collector.geoip") {
			t.Fatalf("%s: %v", p, err)
		}
	}
}
