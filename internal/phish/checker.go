package phish

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/listfetch"
)

// Verdict is what the checker found for a URL, a host or a page.
type Verdict struct {
	Target  string   `json:"target"`
	Host    string   `json:"host"`
	Score   int      `json:"score"`
	Action  string   `json:"action"` // block, warn, log or allow
	Reasons []Reason `json:"reasons"`
}

// Checker holds the brands, the feeds' URLs and domains, and when each
// registrable domain was first seen.
type Checker struct {
	cfg    config.Phishing
	log    *slog.Logger
	brands []brand
	hc     *http.Client

	mu      sync.RWMutex
	urls    map[string]string // normalised URL -> feed
	hosts   map[string]string // host with listed URLs -> feed
	domains map[string]string // listed domain -> feed
	feeds   map[string]feedState

	// hostVerdicts caches CheckHost's answers (the resolver asks for
	// every query); emptied when the feeds change.
	hvMu         sync.Mutex
	hostVerdicts map[string]hostVerdict

	seenMu    sync.Mutex
	seen      map[string]int64 // registrable domain -> first seen (unix seconds)
	seenFile  string
	seenDirty bool
}

type hostVerdict struct {
	v       Verdict
	expires time.Time
}

type feedState struct {
	etag    string
	body    []byte // the last copy fetched (URLs), for If-None-Match
	urls    []string
	domains []string
	loaded  time.Time
	err     string
}

// New builds a checker; feeds load in Run (and once before it returns,
// best effort, so a check right after start sees them).
func New(cfg config.Phishing, dataDir string, log *slog.Logger) (*Checker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Checker{cfg: cfg, log: log, hc: &http.Client{Timeout: 60 * time.Second}, urls: map[string]string{}, hosts: map[string]string{},
		domains: map[string]string{}, feeds: map[string]feedState{}, seen: map[string]int64{}}
	byLabel := map[string]int{}
	for _, d := range cfg.Protect {
		h, err := canonHost(d)
		if err != nil {
			return nil, fmt.Errorf("phishing.protect: %q: %w", d, err)
		}
		label, suffix, _, err := split(h)
		if err != nil {
			return nil, fmt.Errorf("phishing.protect: %q: %w", d, err)
		}
		ul, _ := idna.ToUnicode(label)
		if i, ok := byLabel[ul]; ok {
			c.brands[i].domains = append(c.brands[i].domains, label+"."+suffix)
			continue
		}
		byLabel[ul] = len(c.brands)
		c.brands = append(c.brands, brand{name: ul, label: ul, skel: Skeleton(ul), domains: []string{label + "." + suffix}})
	}
	if dataDir != "" {
		c.seenFile = filepath.Join(dataDir, "phish-seen.json")
		if b, err := os.ReadFile(c.seenFile); err == nil {
			_ = json.Unmarshal(b, &c.seen)
		}
	}
	return c, nil
}

// Run refreshes the feeds every cfg.Refresh and saves the first-seen
// table, until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	c.Refresh(ctx)
	t := time.NewTicker(c.cfg.Refresh.D())
	defer t.Stop()
	save := time.NewTicker(time.Minute)
	defer save.Stop()
	for {
		select {
		case <-ctx.Done():
			c.saveSeen()
			return
		case <-t.C:
			c.Refresh(ctx)
		case <-save.C:
			c.saveSeen()
		}
	}
}

// Refresh loads every feed again (files read, URLs fetched with
// If-None-Match); a feed that fails keeps what it had.
func (c *Checker) Refresh(ctx context.Context) {
	for _, f := range c.cfg.Feeds {
		if err := c.loadFeed(ctx, f); err != nil {
			c.log.Warn("phishing feed failed; keeping its last entries", "feed", f.Source, "err", err)
			c.mu.Lock()
			st := c.feeds[f.Source]
			st.err = err.Error()
			c.feeds[f.Source] = st
			c.mu.Unlock()
		}
	}
	c.rebuild()
}

func (c *Checker) loadFeed(ctx context.Context, f config.PhishFeed) error {
	c.mu.RLock()
	st := c.feeds[f.Source]
	c.mu.RUnlock()
	var body []byte
	if strings.HasPrefix(f.Source, "http://") || strings.HasPrefix(f.Source, "https://") {
		src := listfetch.Source{URL: f.Source, ETag: st.etag, Body: st.body}
		changed, err := listfetch.Get(ctx, c.hc, &src, 256<<20)
		if err != nil {
			return err
		}
		if !changed {
			return nil
		}
		body, st.etag, st.body = src.Body, src.ETag, src.Body
	} else {
		b, err := os.ReadFile(f.Source)
		if err != nil {
			return err
		}
		body = b
	}
	urls, domains, err := ParseFeed(f.Format, body)
	if err != nil {
		return err
	}
	st.urls, st.domains, st.loaded, st.err = urls, domains, time.Now(), ""
	c.mu.Lock()
	c.feeds[f.Source] = st
	c.mu.Unlock()
	c.log.Info("phishing feed loaded", "feed", f.Source, "urls", len(urls), "domains", len(domains))
	return nil
}

// rebuild makes the lookup tables from every feed's entries.
func (c *Checker) rebuild() {
	urls, hosts, domains := map[string]string{}, map[string]string{}, map[string]string{}
	c.mu.RLock()
	for name, st := range c.feeds {
		for _, u := range st.urls {
			if k, h := normURL(u); k != "" {
				urls[k], hosts[h] = name, name
			}
		}
		for _, d := range st.domains {
			if h, err := canonHost(d); err == nil {
				domains[h] = name
			}
		}
	}
	c.mu.RUnlock()
	c.mu.Lock()
	c.urls, c.hosts, c.domains = urls, hosts, domains
	c.mu.Unlock()
	c.hvMu.Lock()
	c.hostVerdicts = nil
	c.hvMu.Unlock()
}

// CheckHost is Check of a bare host name (observed as seen), with the
// answers kept for a minute: the resolver asks it for every query.
func (c *Checker) CheckHost(name string) Verdict {
	now := time.Now()
	c.hvMu.Lock()
	if hv, ok := c.hostVerdicts[name]; ok && now.Before(hv.expires) {
		c.hvMu.Unlock()
		return hv.v
	}
	c.hvMu.Unlock()
	v, err := c.Check(name, true)
	if err != nil {
		v = Verdict{Target: name, Action: "allow", Reasons: []Reason{}}
	}
	c.hvMu.Lock()
	if c.hostVerdicts == nil || len(c.hostVerdicts) >= 100_000 {
		c.hostVerdicts = map[string]hostVerdict{}
	}
	c.hostVerdicts[name] = hostVerdict{v: v, expires: now.Add(time.Minute)}
	c.hvMu.Unlock()
	return v
}

// ParseFeed reads a feed: openphish (a URL a line), urlhaus (its CSV),
// phishtank (its JSON or CSV), domains (a domain a line; hosts-file
// lines too). Comments start with #.
func ParseFeed(format string, b []byte) (urls, domains []string, err error) {
	switch format {
	case "openphish":
		for _, l := range lines(b) {
			urls = append(urls, l)
		}
	case "domains":
		for _, l := range lines(b) {
			f := strings.Fields(l)
			d := f[0]
			if len(f) >= 2 && (f[0] == "0.0.0.0" || f[0] == "127.0.0.1" || f[0] == "::" || f[0] == "::1") {
				d = f[1]
			}
			domains = append(domains, d)
		}
	case "urlhaus":
		r := csv.NewReader(bytes.NewReader(b))
		r.Comment, r.FieldsPerRecord, r.LazyQuotes = '#', -1, true
		for {
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("urlhaus csv: %w", err)
			}
			if len(rec) >= 3 && rec[0] != "id" {
				urls = append(urls, rec[2])
			}
		}
	case "phishtank":
		t := bytes.TrimSpace(b)
		if len(t) > 0 && t[0] == '[' {
			var entries []struct {
				URL string `json:"url"`
			}
			if err := json.Unmarshal(t, &entries); err != nil {
				return nil, nil, fmt.Errorf("phishtank json: %w", err)
			}
			for _, e := range entries {
				urls = append(urls, e.URL)
			}
			break
		}
		r := csv.NewReader(bytes.NewReader(t))
		r.FieldsPerRecord, r.LazyQuotes = -1, true
		head, err := r.Read()
		if err != nil {
			return nil, nil, fmt.Errorf("phishtank csv: %w", err)
		}
		col := -1
		for i, h := range head {
			if strings.TrimSpace(h) == "url" {
				col = i
			}
		}
		if col < 0 {
			return nil, nil, errors.New("phishtank csv: no url column in the header")
		}
		for {
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("phishtank csv: %w", err)
			}
			if col < len(rec) {
				urls = append(urls, rec[col])
			}
		}
	default:
		return nil, nil, fmt.Errorf("format: want openphish, urlhaus, phishtank or domains, got %q", format)
	}
	return urls, domains, nil
}

func lines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && l[0] != '#' && l[0] != '!' {
			out = append(out, l)
		}
	}
	return out
}

// normURL is a URL as feeds and requests are compared: host canonical,
// no scheme, default port and fragment dropped, path "/" when empty.
func normURL(raw string) (key, host string) {
	raw = strings.TrimSpace(raw)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", ""
	}
	h, err := canonHost(u.Hostname())
	if err != nil {
		return "", ""
	}
	host = h
	if p := u.Port(); p != "" && p != "80" && p != "443" {
		h += ":" + p
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	key = h + path
	if u.RawQuery != "" {
		key += "?" + u.RawQuery
	}
	return key, host
}

func canonHost(h string) (string, error) {
	h = strings.TrimSuffix(strings.TrimSpace(h), ".")
	if h == "" || len(h) > 253 {
		return "", errors.New("not a host name")
	}
	a, err := idna.Lookup.ToASCII(h)
	if err != nil {
		return "", err
	}
	return strings.ToLower(a), nil
}

// Check judges a URL or a bare host (for tunnels and DNS, where there is
// no path). With observe, the host's registrable domain is recorded as
// seen (the proxy and the resolver observe; an API check does not).
func (c *Checker) Check(target string, observe bool) (Verdict, error) {
	key, host := normURL(target)
	if host == "" {
		return Verdict{Target: target}, fmt.Errorf("target: %q is not a URL or a host name", target)
	}
	v := Verdict{Target: target, Host: host}
	hasPath := strings.Contains(target, "/") && strings.Contains(strings.TrimPrefix(strings.TrimPrefix(target, "https://"), "http://"), "/")
	c.mu.RLock()
	if f, ok := c.urls[key]; ok && hasPath {
		v.Reasons = append(v.Reasons, Reason{"feed", "the URL is listed in " + f, ScoreFeed})
	}
	for h := host; h != ""; {
		if f, ok := c.domains[h]; ok {
			v.Reasons = append(v.Reasons, Reason{"feed", h + " is listed in " + f, ScoreFeed})
			break
		}
		i := strings.IndexByte(h, '.')
		if i < 0 {
			break
		}
		h = h[i+1:]
	}
	if f, ok := c.hosts[host]; ok && (len(v.Reasons) == 0) {
		v.Reasons = append(v.Reasons, Reason{"feed_host", host + " serves URLs listed in " + f, ScoreFeedHost})
	}
	c.mu.RUnlock()
	if !c.protected(host) {
		v.Reasons = append(v.Reasons, c.lookalike(host)...)
	}
	first, known := c.firstSeen(host, observe)
	if len(v.Reasons) > 0 && c.cfg.NewDomainDays > 0 && (!known || time.Since(first) < time.Duration(c.cfg.NewDomainDays)*24*time.Hour) {
		what := "never seen before"
		if known {
			what = fmt.Sprintf("first seen %s ago", time.Since(first).Round(time.Minute))
		}
		v.Reasons = append(v.Reasons, Reason{"new", fmt.Sprintf("%s (new_domain_days: %d)", what, c.cfg.NewDomainDays), ScoreNew})
	}
	c.finish(&v)
	return v, nil
}

// Page adds what a page shows to a verdict of its URL: a protected
// brand's name in its title or text with a password form, on a domain
// that is not the brand's.
func (c *Checker) Page(v *Verdict, title, text string, password bool, formActions []string) {
	if !password || c.protected(v.Host) {
		return
	}
	words := " " + normWords(title+" "+text) + " "
	for _, b := range c.brands {
		if !strings.Contains(words, " "+normWords(b.name)+" ") {
			continue
		}
		v.Reasons = append(v.Reasons, Reason{"page", fmt.Sprintf("the page shows %s's name and asks for a password, on %s", b.name, v.Host), ScorePage})
		for _, a := range formActions {
			u, err := url.Parse(a)
			if err != nil || u.Host == "" {
				continue
			}
			if h, err := canonHost(u.Hostname()); err == nil && h != v.Host {
				v.Reasons = append(v.Reasons, Reason{"form_away", "its form posts to " + h, ScoreFormAway})
				break
			}
		}
		break
	}
	c.finish(v)
}

func normWords(s string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 0x7f)
	}), " ")
}

func (c *Checker) finish(v *Verdict) {
	v.Score = 0
	for _, r := range v.Reasons {
		v.Score += r.Score
	}
	switch {
	case v.Score >= c.cfg.BlockScore:
		v.Action = "block"
	case v.Score >= c.cfg.WarnScore:
		v.Action = "warn"
	case v.Score > 0:
		v.Action = "log"
	default:
		v.Action = "allow"
	}
	if v.Reasons == nil {
		v.Reasons = []Reason{}
	}
}

// firstSeen is when host's registrable domain was first observed, and
// whether it was before this call; with observe, an unknown one is
// recorded as seen now.
func (c *Checker) firstSeen(host string, observe bool) (time.Time, bool) {
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		d = host
	}
	now := time.Now().Unix()
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	if t, ok := c.seen[d]; ok {
		return time.Unix(t, 0), true
	}
	if observe {
		if len(c.seen) >= 1_000_000 {
			c.seen = map[string]int64{} // bounded: forget all rather than grow without end
		}
		c.seen[d], c.seenDirty = now, true
	}
	return time.Unix(now, 0), false
}

func (c *Checker) saveSeen() {
	c.seenMu.Lock()
	if !c.seenDirty || c.seenFile == "" {
		c.seenMu.Unlock()
		return
	}
	b, err := json.Marshal(c.seen)
	c.seenDirty = false
	c.seenMu.Unlock()
	if err != nil {
		return
	}
	tmp := c.seenFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		_ = os.Rename(tmp, c.seenFile)
	}
}

// FeedStatus is one feed's state, for the API.
type FeedStatus struct {
	Source  string    `json:"source"`
	URLs    int       `json:"urls"`
	Domains int       `json:"domains"`
	Loaded  time.Time `json:"loaded,omitzero"`
	Error   string    `json:"error,omitempty"`
}

// Feeds reports every feed.
func (c *Checker) Feeds() []FeedStatus {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []FeedStatus
	for _, f := range c.cfg.Feeds {
		st := c.feeds[f.Source]
		out = append(out, FeedStatus{Source: f.Source, URLs: len(st.urls), Domains: len(st.domains), Loaded: st.loaded, Error: st.err})
	}
	return out
}
