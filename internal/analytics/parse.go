package analytics

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/enrich"
	"github.com/opsgraph/ops/internal/event"
)

// trackData is the part of a tracking message (ev.track.*, as the
// collector stores it) that analytics reads.
type trackData struct {
	Event       string         `json:"event"`
	Name        string         `json:"name"`
	UserID      string         `json:"userId"`
	AnonymousID string         `json:"anonymousId"`
	Properties  map[string]any `json:"properties"`
	Context     struct {
		Page struct {
			Path     string `json:"path"`
			URL      string `json:"url"`
			Referrer string `json:"referrer"`
		} `json:"page"`
		Campaign struct {
			Name    string `json:"name"`
			Source  string `json:"source"`
			Medium  string `json:"medium"`
			Term    string `json:"term"`
			Content string `json:"content"`
		} `json:"campaign"`
		UserAgent string `json:"userAgent"`
		Screen    struct {
			Width int `json:"width"`
		} `json:"screen"`
		Location struct {
			Country string `json:"country"`
		} `json:"location"`
	} `json:"context"`
}

// Limits on what one event adds to the store.
const (
	maxProps    = 30
	maxValueLen = 200
)

// errSkip marks an event analytics leaves out on purpose (a bot, an
// identify call).
var errSkip = fmt.Errorf("not a page view or custom event")

// parseHit reads a tracking event into a hit: page and screen calls are
// page views, track calls custom events; identify, group and alias say
// nothing about traffic, and bots are left out.
func parseHit(e *event.Event) (*hit, error) {
	kind, _ := strings.CutPrefix(e.Type, "track.")
	switch kind {
	case "page", "screen", "track":
	default:
		return nil, errSkip
	}
	var d trackData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	visitor := d.UserID
	if visitor == "" {
		visitor = d.AnonymousID
	}
	if visitor == "" {
		return nil, errSkip
	}
	c := enrich.ParseUserAgent(d.Context.UserAgent)
	if c.Bot {
		return nil, errSkip
	}
	h := &hit{at: e.Time, visitor: hashVisitor(visitor)}
	pageURL := firstNonEmpty(d.Context.Page.URL, str(d.Properties["url"]))
	h.page = pagePath(firstNonEmpty(d.Context.Page.Path, str(d.Properties["path"])), pageURL)
	switch kind {
	case "page":
		h.name = pageview
	case "screen":
		h.name = pageview
		if h.page == "" {
			h.page = d.Name
		}
	default:
		h.name = clip(d.Event)
		if h.name == "" || h.name == pageview {
			return nil, errSkip
		}
		h.props = props(d.Properties)
	}
	referrer := firstNonEmpty(d.Context.Page.Referrer, str(d.Properties["referrer"]))
	v := &h.visit
	if u, err := url.Parse(pageURL); err == nil {
		v[DimHostname] = strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		q := u.Query()
		camp := d.Context.Campaign
		v[DimUTMSource] = clip(firstNonEmpty(camp.Source, q.Get("utm_source")))
		v[DimUTMMedium] = clip(firstNonEmpty(camp.Medium, q.Get("utm_medium")))
		v[DimUTMCampaign] = clip(firstNonEmpty(camp.Name, q.Get("utm_campaign")))
		v[DimUTMTerm] = clip(firstNonEmpty(camp.Term, q.Get("utm_term")))
		v[DimUTMContent] = clip(firstNonEmpty(camp.Content, q.Get("utm_content")))
	}
	class, domain, name := enrich.Source(referrer, pageURL)
	switch {
	case v[DimUTMSource] != "":
		v[DimSource] = v[DimUTMSource]
	case name != "":
		v[DimSource] = name
	case domain != "":
		v[DimSource] = domain
	case class == "email":
		v[DimSource] = "Email"
	}
	if class != "internal" && class != "direct" {
		v[DimReferrer] = clip(referrerURL(referrer))
	}
	v[DimBrowser], v[DimOS], v[DimDevice] = c.Browser, c.OS, c.Device
	if c.Device == "unknown" {
		v[DimDevice] = ""
	}
	v[DimScreen] = screenClass(d.Context.Screen.Width)
	v[DimCountry] = strings.ToUpper(clip(d.Context.Location.Country))
	return h, nil
}

// proxyData is the part of an ev.proxy.request event that analytics
// reads.
type proxyData struct {
	Method    string            `json:"method"`
	Host      string            `json:"host"`
	Path      string            `json:"path"`
	Status    int               `json:"status"`
	Type      string            `json:"content_type"`
	IP        string            `json:"ip"`
	UserAgent string            `json:"user_agent"`
	Referrer  string            `json:"referrer"`
	UTM       map[string]string `json:"utm"`
}

// parseProxyHit reads a request the proxy served into a page view: a GET
// answered with an HTML page (2xx), or a 304 for a path that names no file
// of another kind (a revalidated page carries no Content-Type), from a
// browser that is not a bot. The visitor is cookieless, as ops.js's: the
// site, the client's truncated address (the event holds no other) and its
// user agent, on that UTC day, so the same person on two days is two
// visitors, as in Plausible.
func parseProxyHit(e *event.Event) (*hit, error) {
	var d proxyData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if d.Method != "GET" || d.UserAgent == "" || !proxyPage(d.Status, d.Type, d.Path) {
		return nil, errSkip
	}
	c := enrich.ParseUserAgent(d.UserAgent)
	if c.Bot {
		return nil, errSkip
	}
	host := strings.TrimSuffix(strings.ToLower(d.Host), ".")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	day := e.Time.UTC().Format(time.DateOnly)
	h := &hit{at: e.Time, name: pageview, page: pagePath(d.Path, ""),
		visitor: hashVisitor("proxy\x00" + day + "\x00" + host + "\x00" + d.IP + "\x00" + d.UserAgent)}
	v := &h.visit
	v[DimHostname] = clip(host)
	v[DimUTMSource], v[DimUTMMedium], v[DimUTMCampaign] = clip(d.UTM["source"]), clip(d.UTM["medium"]), clip(d.UTM["campaign"])
	v[DimUTMTerm], v[DimUTMContent] = clip(d.UTM["term"]), clip(d.UTM["content"])
	pageURL := "https://" + host + d.Path
	class, domain, name := enrich.Source(d.Referrer, pageURL)
	switch {
	case v[DimUTMSource] != "":
		v[DimSource] = v[DimUTMSource]
	case name != "":
		v[DimSource] = name
	case domain != "":
		v[DimSource] = domain
	case class == "email":
		v[DimSource] = "Email"
	}
	if class != "internal" && class != "direct" {
		v[DimReferrer] = clip(referrerURL(d.Referrer))
	}
	v[DimBrowser], v[DimOS], v[DimDevice] = c.Browser, c.OS, c.Device
	if c.Device == "unknown" {
		v[DimDevice] = ""
	}
	return h, nil
}

// proxyPage reports whether a response is a page a person looks at.
func proxyPage(status int, ctype, path string) bool {
	switch {
	case status >= 200 && status < 300:
		return ctype == "text/html" || ctype == "application/xhtml+xml"
	case status == 304:
		last := path[strings.LastIndexByte(path, '/')+1:]
		ext := strings.ToLower(last[strings.LastIndexByte(last, '.')+1:])
		return !strings.Contains(last, ".") || ext == "html" || ext == "htm"
	}
	return false
}

// hashVisitor turns a visitor id into the 64 bits the store keeps.
func hashVisitor(s string) uint64 {
	f := fnv.New64a()
	_, _ = f.Write([]byte(s))
	return f.Sum64()
}

// pagePath is the page's path: the path given, else the URL's; without
// the query string, a trailing slash kept as sent.
func pagePath(path, pageURL string) string {
	if path == "" && pageURL != "" {
		if u, err := url.Parse(pageURL); err == nil {
			path = u.EscapedPath()
		}
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if path == "" {
		return ""
	}
	if path[0] != '/' {
		path = "/" + path
	}
	return clip(path)
}

// referrerURL is a referrer without its query string and fragment (they
// carry search terms and tokens).
func referrerURL(ref string) string {
	u, err := url.Parse(strings.TrimSpace(ref))
	if err != nil || u.Host == "" {
		return ""
	}
	return strings.ToLower(u.Host) + u.EscapedPath()
}

// screenClass is Plausible's: by the screen's width in CSS pixels.
func screenClass(w int) string {
	switch {
	case w <= 0:
		return ""
	case w < 576:
		return "Mobile"
	case w < 992:
		return "Tablet"
	case w < 1440:
		return "Laptop"
	}
	return "Desktop"
}

// props keeps a custom event's scalar properties, as text, in key order.
func props(m map[string]any) []kv {
	out := make([]kv, 0, min(len(m), maxProps))
	for k, v := range m {
		s, ok := scalar(v)
		if !ok || k == "" {
			continue
		}
		out = append(out, kv{clip(k), clip(s)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].k < out[j].k })
	if len(out) > maxProps {
		out = out[:maxProps]
	}
	return out
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return ""
}

// clip bounds a value's length (by bytes, at a rune boundary).
func clip(s string) string {
	if len(s) <= maxValueLen {
		return s
	}
	i := maxValueLen
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}
