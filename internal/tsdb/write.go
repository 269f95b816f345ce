package tsdb

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/golang/snappy"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// maxWriteBytes bounds a remote-write body before and after snappy.
const (
	maxWriteBody    = 32 << 20
	maxWriteDecoded = 128 << 20
)

// decodeWriteRequest reads a remote-write 1.0 body: a snappy block of a
// prompb.WriteRequest. Errors name what was wrong, for a 400.
func decodeWriteRequest(body []byte) (*prompb.WriteRequest, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, fmt.Errorf("body is not snappy-compressed (block format): %w", err)
	}
	if n > maxWriteDecoded {
		return nil, fmt.Errorf("body decompresses to %d bytes, more than %d", n, maxWriteDecoded)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("body is not snappy-compressed (block format): %w", err)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("body is not a remote-write 1.0 WriteRequest: %w", err)
	}
	return &req, nil
}

// writeSamples checks and converts a request's series: every series needs
// a metric name and valid, unique, sorted-or-not labels.
func writeSamples(req *prompb.WriteRequest) ([]sample, error) {
	var out []sample
	for i, ts := range req.Timeseries {
		b := labels.NewScratchBuilder(len(ts.Labels))
		for _, l := range ts.Labels {
			b.Add(l.Name, l.Value)
		}
		b.Sort()
		ls := b.Labels()
		if ls.Get(model.MetricNameLabel) == "" {
			return nil, fmt.Errorf("timeseries[%d]: no %s label", i, model.MetricNameLabel)
		}
		if !ls.IsValid(model.UTF8Validation) {
			return nil, fmt.Errorf("timeseries[%d]: invalid label names or values in %s", i, ls.String())
		}
		if name, dup := ls.HasDuplicateLabelNames(); dup {
			return nil, fmt.Errorf("timeseries[%d]: label %q appears twice", i, name)
		}
		for _, s := range ts.Samples {
			out = append(out, sample{l: ls, t: s.Timestamp, v: s.Value})
		}
		for _, h := range ts.Histograms {
			s := sample{l: ls, t: h.Timestamp}
			if h.IsFloatHistogram() {
				s.fh = h.ToFloatHistogram()
				if err := s.fh.Validate(); err != nil {
					return nil, fmt.Errorf("timeseries[%d]: histogram: %w", i, err)
				}
			} else {
				s.h = h.ToIntHistogram()
				if err := s.h.Validate(); err != nil {
					return nil, fmt.Errorf("timeseries[%d]: histogram: %w", i, err)
				}
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// remoteWrite is POST /prometheus/api/v1/write: Prometheus remote write
// 1.0. 204 when everything was stored; 400 for a body that cannot be read
// or samples the TSDB refused (the rest is stored, as Prometheus does:
// senders do not retry 4xx); 5xx when storing failed (senders retry).
func (m *Module) remoteWrite(w http.ResponseWriter, r *http.Request) {
	code := http.StatusNoContent
	defer func() { m.writeReqs.WithLabelValues(strconv.Itoa(code)).Inc() }()
	fail := func(c int, msg string) {
		code = c
		http.Error(w, msg, c)
	}
	if ct := r.Header.Get("Content-Type"); strings.Contains(ct, "io.prometheus.write.v2") {
		fail(http.StatusUnsupportedMediaType, "remote write 2.0 is not supported; send 1.0 (prometheus.WriteRequest)")
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "snappy") {
		fail(http.StatusUnsupportedMediaType, "Content-Encoding: want snappy, got "+ce)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWriteBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", maxWriteBody))
			return
		}
		fail(http.StatusBadRequest, "body: "+err.Error())
		return
	}
	req, err := decodeWriteRequest(body)
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	ss, err := writeSamples(req)
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	for _, md := range req.Metadata {
		m.meta.set(md.MetricFamilyName, metaEntry{Type: strings.ToLower(md.Type.String()), Help: md.Help, Unit: md.Unit})
	}
	m.meta.flush(m.log)
	n, err := m.appendAll(r.Context(), "remote_write", ss)
	if err != nil {
		fail(http.StatusInternalServerError, "storing samples: "+err.Error())
		return
	}
	if n < len(ss) {
		fail(http.StatusBadRequest, fmt.Sprintf("%d of %d samples refused (out of order, too old or a different value for a stored timestamp); the rest are stored", len(ss)-n, len(ss)))
		return
	}
	w.WriteHeader(code)
}
