package forward

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/listfetch"
	"github.com/opsgraph/ops/internal/webfilter"
)

//go:embed pages/block.html
var blockHTML string

//go:embed pages/warn.html
var warnHTML string

// Paths under any host the proxy answers itself (the block and warn
// pages' links), beside nothing a real site serves.
const (
	continuePath = "/.well-known/ops-filter/continue"
	reviewPath   = "/.well-known/ops-filter/review"
)

// filter is the content filter's state: the loaded category set (swapped
// whole on a reload), the page templates, the key that signs the pages'
// links, and who clicked through which warn page.
type filter struct {
	cfg   config.ForwardFilter
	log   *slog.Logger
	set   atomic.Pointer[webfilter.Set]
	key   []byte
	block *template.Template
	warn  *template.Template
	hc    *http.Client

	mu     sync.Mutex
	passes map[string]time.Time        // who \x00 host \x00 category -> until
	lists  map[string]listfetch.Source // list_url -> last body and ETag
	sig    string                      // the directory's names, sizes and times at the last load
}

func newFilter(cfg config.ForwardFilter, log *slog.Logger) (*filter, error) {
	f := &filter{cfg: cfg, log: log, key: make([]byte, 32), passes: map[string]time.Time{}, lists: map[string]listfetch.Source{},
		hc: &http.Client{Timeout: 30 * time.Second}}
	_, _ = rand.Read(f.key)
	var err error
	if f.block, err = pageTemplate("block", cfg.BlockPage, blockHTML); err != nil {
		return nil, fmt.Errorf("proxy.forward.filter.block_page: %w", err)
	}
	if f.warn, err = pageTemplate("warn", cfg.WarnPage, warnHTML); err != nil {
		return nil, fmt.Errorf("proxy.forward.filter.warn_page: %w", err)
	}
	if cfg.Enabled {
		if err := f.reload(context.Background(), true); err != nil {
			return nil, fmt.Errorf("proxy.forward.filter.categories: %w", err)
		}
	}
	return f, nil
}

func pageTemplate(name, file, def string) (*template.Template, error) {
	if file == "" {
		return template.New(name).Parse(def)
	}
	return template.ParseFiles(file)
}

func (f *filter) fsys() fs.FS {
	if f.cfg.Categories == "" {
		return webfilter.StarterFS()
	}
	return os.DirFS(f.cfg.Categories)
}

// signature is the category directory's file names, sizes and times: a
// change to any rule file changes it.
func (f *filter) signature() string {
	if f.cfg.Categories == "" {
		return "starter"
	}
	var b strings.Builder
	_ = filepath.WalkDir(f.cfg.Categories, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return b.String()
}

// reload loads the categories again when the directory or a list_url's
// list changed (or always when force). A set that fails to load is
// logged and the old one kept: a typo in a rule file filters nothing
// less than before.
func (f *filter) reload(ctx context.Context, force bool) error {
	sig := f.signature()
	fsys := f.fsys()
	// The list URLs are in the category.conf files; read them from the
	// current set when there is one, else from a first load without.
	cur := f.set.Load()
	if cur == nil {
		s, err := webfilter.Load(fsys, nil)
		if err != nil {
			return err
		}
		cur = s
	}
	extra := map[string][]byte{}
	changed := force
	for _, c := range cur.Categories {
		for _, u := range c.ListURLs {
			body, fresh, err := f.fetch(ctx, u)
			if err != nil {
				f.log.Warn("category list_url failed; keeping the last copy", "category", c.Name, "url", u, "err", err)
			}
			changed = changed || fresh
			extra[c.Name] = append(extra[c.Name], body...)
			extra[c.Name] = append(extra[c.Name], '\n')
		}
	}
	f.mu.Lock()
	changed = changed || sig != f.sig
	f.mu.Unlock()
	if !changed {
		return nil
	}
	s, err := webfilter.Load(fsys, extra)
	if err != nil {
		return err
	}
	f.set.Store(s)
	f.mu.Lock()
	f.sig = sig
	f.mu.Unlock()
	rules := 0
	for _, c := range s.Categories {
		rules += c.Rules
	}
	f.log.Info("content filter loaded", "categories", len(s.Categories), "rules", rules)
	return nil
}

// fetch gets a list_url (listfetch: If-None-Match, the last copy kept on
// failure); fresh is true when the body is new.
func (f *filter) fetch(ctx context.Context, u string) (body []byte, fresh bool, err error) {
	f.mu.Lock()
	src := f.lists[u]
	f.mu.Unlock()
	src.URL = u
	fresh, err = listfetch.Get(ctx, f.hc, &src, 64<<20)
	if fresh {
		f.mu.Lock()
		f.lists[u] = src
		f.mu.Unlock()
	}
	return src.Body, fresh, err
}

// run reloads on the configured interval until ctx ends.
func (f *filter) run(ctx context.Context) {
	t := time.NewTicker(f.cfg.Reload.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := f.reload(ctx, false); err != nil {
				f.log.Error("content filter reload failed; the last good rules stay in force", "err", err)
			}
			f.mu.Lock()
			now := time.Now()
			for k, until := range f.passes {
				if now.After(until) {
					delete(f.passes, k)
				}
			}
			f.mu.Unlock()
		}
	}
}

// sign is the MAC that makes the pages' links good only for the person,
// host and category they were made for.
func (f *filter) sign(parts ...string) string {
	m := hmac.New(sha256.New, f.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

func (f *filter) passed(who, host, cat string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.passes[who+"\x00"+host+"\x00"+cat]
	return ok && time.Now().Before(until)
}

func (f *filter) pass(who, host, cat string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.passes) > 100_000 {
		clear(f.passes)
	}
	f.passes[who+"\x00"+host+"\x00"+cat] = time.Now().Add(f.cfg.WarnFor.D())
}

// pageData is what the block and warn templates are given.
type pageData struct {
	Category, Description, Host, URL, User, RequestID, Reason string
	Score                                                     int
	ReviewURL, ReviewToken, ContinueURL                       string
}

func (f *filter) render(w http.ResponseWriter, t *template.Template, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Ops-Filter", d.Category)
	w.WriteHeader(http.StatusForbidden)
	if err := t.Execute(w, d); err != nil {
		f.log.Warn("page template failed", "err", err)
	}
}

// categoryOf is the top category of sc, or "" under the threshold.
func (f *filter) categoryOf(sc *webfilter.Scores) (string, int) {
	if sc == nil {
		return "", 0
	}
	top, ok := sc.Top(f.cfg.Threshold)
	if !ok {
		return "", 0
	}
	return top.Category, top.Score
}

// topScores is the scores as an event carries them: the top five.
func topScores(sc *webfilter.Scores) []webfilter.Score {
	if sc == nil {
		return nil
	}
	t := sc.Totals() // highest first
	if len(t) > 5 {
		t = t[:5]
	}
	return t
}

var errBadLink = errors.New("link: not signed for you, or expired")

func expiryOK(s string) bool {
	n, err := strconv.ParseInt(s, 10, 64)
	return err == nil && time.Now().Unix() < n
}
