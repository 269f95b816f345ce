package tsdb

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
)

// metaEntry is a metric family's type, help and unit, as /metadata shows.
type metaEntry struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// metaStore keeps the newest metadata per metric family, saved to a small
// JSON file when it changes (Prometheus keeps it per scrape target in
// memory; Ops's series come from several sources, so it is kept here).
type metaStore struct {
	path  string
	mu    sync.Mutex
	m     map[string]metaEntry
	dirty bool
}

func openMeta(path string) (*metaStore, error) {
	s := &metaStore{path: path, m: map[string]metaEntry{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(b, &s.m); err != nil {
		s.m = map[string]metaEntry{} // rebuilt as metrics arrive
	}
	return s, nil
}

func (s *metaStore) set(name string, e metaEntry) {
	if name == "" || e.Type == "" {
		return
	}
	s.mu.Lock()
	if s.m[name] != e {
		s.m[name] = e
		s.dirty = true
	}
	s.mu.Unlock()
}

// flush writes the file when something changed.
func (s *metaStore) flush(log *slog.Logger) {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	b, err := json.Marshal(s.m)
	s.dirty = false
	s.mu.Unlock()
	if err != nil {
		return
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err == nil {
		err = os.Rename(tmp, s.path)
		if err != nil {
			log.Warn("tsdb metadata", "err", err)
		}
	}
}

// list is the data of /metadata: name -> entries, filtered and limited as
// Prometheus does.
func (s *metaStore) list(metric string, limit, perMetric int) map[string][]metaEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.m))
	for n := range s.m {
		if metric == "" || n == metric {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	out := map[string][]metaEntry{}
	for _, n := range names {
		if limit > 0 && len(out) >= limit {
			break
		}
		out[n] = []metaEntry{s.m[n]}
		if perMetric > 0 && len(out[n]) > perMetric {
			out[n] = out[n][:perMetric]
		}
	}
	return out
}
