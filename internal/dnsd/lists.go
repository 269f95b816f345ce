package dnsd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/config"

	"github.com/opsgraph/ops/internal/listfetch"
)

// Block list sources. Files are read at start and at every refresh; URLs
// are fetched with If-None-Match every dns.block.refresh and kept, with
// their ETag, under data_dir/dns-lists, so a restart while the list's
// host is down still has the last good copy. A fetch that fails (an
// error, a status other than 200 or 304, an empty body) keeps the list
// held: a broken mirror never empties a block list.

// maxListBytes bounds one list (the largest public lists are ~30 MiB).
const maxListBytes = 64 << 20

type listSource struct {
	ref  string // a path or a URL
	url  bool
	body []byte // the last good content
	etag string
}

type lists struct {
	cfg    config.DNSBlock
	dir    string // where fetched lists are kept
	client *http.Client
	log    *slog.Logger
	srcs   []*listSource
}

func newLists(cfg config.DNSBlock, dataDir string, log *slog.Logger) *lists {
	l := &lists{cfg: cfg, dir: filepath.Join(dataDir, "dns-lists"), log: log,
		client: &http.Client{Timeout: 60 * time.Second}}
	for _, ref := range cfg.Lists {
		l.srcs = append(l.srcs, &listSource{ref: ref, url: strings.Contains(ref, "://")})
	}
	return l
}

// cacheFile is where a URL's last good copy lives.
func (l *lists) cacheFile(ref string) string {
	h := sha256.Sum256([]byte(ref))
	return filepath.Join(l.dir, hex.EncodeToString(h[:8]))
}

// load reads every source for the start: files must be readable (a
// typo is a config error); a URL uses its kept copy, and is fetched when
// there is none (a failure is logged, and the list is empty until a
// refresh gets it).
func (l *lists) load(ctx context.Context) error {
	for _, s := range l.srcs {
		if !s.url {
			b, err := os.ReadFile(s.ref)
			if err != nil {
				return fmt.Errorf("dns.block.lists: %w", err)
			}
			s.body = b
			continue
		}
		if b, err := os.ReadFile(l.cacheFile(s.ref)); err == nil {
			s.body = b
			if e, err := os.ReadFile(l.cacheFile(s.ref) + ".etag"); err == nil {
				s.etag = string(e)
			}
			continue
		}
		if _, err := l.fetch(ctx, s); err != nil {
			l.log.Error("block list not fetched; it is empty until a refresh gets it", "list", s.ref, "err", err)
		}
	}
	return nil
}

// refresh re-reads files and fetches URLs; it reports whether anything
// changed.
func (l *lists) refresh(ctx context.Context) bool {
	changed := false
	for _, s := range l.srcs {
		if !s.url {
			b, err := os.ReadFile(s.ref)
			if err != nil {
				l.log.Warn("block list file unreadable; the last content read is kept", "list", s.ref, "err", err)
				continue
			}
			if !bytes.Equal(b, s.body) {
				s.body, changed = b, true
			}
			continue
		}
		c, err := l.fetch(ctx, s)
		if err != nil {
			l.log.Warn("block list refresh failed; the list held is kept", "list", s.ref, "err", err)
		}
		changed = changed || c
	}
	return changed
}

// fetch gets a URL list if it changed (If-None-Match); on success it is
// kept on disk with its ETag.
func (l *lists) fetch(ctx context.Context, s *listSource) (bool, error) {
	src := listfetch.Source{URL: s.ref, ETag: s.etag, Body: s.body}
	changed, err := listfetch.Get(ctx, l.client, &src, maxListBytes)
	if !changed || err != nil {
		return false, err
	}
	b := src.Body
	s.body, s.etag = src.Body, src.ETag
	if err := os.MkdirAll(l.dir, 0o750); err == nil {
		f := l.cacheFile(s.ref)
		if err := os.WriteFile(f+".tmp", b, 0o640); err == nil {
			_ = os.Rename(f+".tmp", f)
			_ = os.WriteFile(f+".etag", []byte(s.etag), 0o640)
		}
	}
	return true, nil
}

// build parses every source's content and the allow list into a filter.
func (l *lists) build() *filter {
	f := newFilter()
	for _, s := range l.srcs {
		name := s.ref
		if i := strings.LastIndexByte(name, '/'); i >= 0 && i < len(name)-1 {
			name = name[i+1:]
		}
		_ = f.addList(bytes.NewReader(s.body), name)
	}
	for _, d := range l.cfg.Allow {
		f.add(d, rule{kind: ruleAllow, source: "dns.block.allow"})
	}
	return f
}
