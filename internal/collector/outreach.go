package collector

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/reply"
)

// Outreach: campaigns, signed tracking links and the e-mail open pixel.
//
// A token is base64url(JSON {c, u, r}) "." base64url(HMAC-SHA256(secret,
// payload)[:16]). The secret is made once and kept in the KV bucket
// OPS_SECRETS, so links survive restarts and every node checks them alike.
// A token that does not verify is refused with 400 and never redirects: the
// link endpoint is no open redirect.

const (
	secretBucket   = "OPS_SECRETS"
	campaignBucket = "OPS_CAMPAIGNS"
	openBucket     = "OPS_OPENS"
	attrBucket     = "OPS_ATTRIBUTION"
	openWindow     = time.Hour
)

// Campaign is an outreach campaign.
type Campaign struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Source   string    `json:"utm_source"`
	Medium   string    `json:"utm_medium"`
	Created  time.Time `json:"created"`
	Campaign string    `json:"utm_campaign"`
}

type linkToken struct {
	C string `json:"c"`
	U string `json:"u"`
	R string `json:"r,omitempty"`
}

type outreach struct {
	m      *Module
	mu     sync.Mutex
	secret []byte
}

func (o *outreach) kv(ctx context.Context, bucket string, ttl time.Duration) (jetstream.KeyValue, error) {
	return o.m.deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, TTL: ttl, History: 1})
}

func (o *outreach) key(ctx context.Context) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.secret != nil {
		return o.secret, nil
	}
	kv, err := o.kv(ctx, secretBucket, 0)
	if err != nil {
		return nil, err
	}
	s, err := bus.Secret(ctx, kv, "links", 32)
	if err != nil {
		return nil, err
	}
	o.secret = s
	return s, nil
}

func (o *outreach) sign(ctx context.Context, t linkToken) (string, error) {
	key, err := o.key(ctx)
	if err != nil {
		return "", err
	}
	p, _ := json.Marshal(t)
	mac := hmac.New(sha256.New, key)
	mac.Write(p)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(p) + "." + enc.EncodeToString(mac.Sum(nil)[:16]), nil
}

var errBadToken = errors.New("invalid or altered token")

func (o *outreach) verify(ctx context.Context, tok string) (linkToken, error) {
	var t linkToken
	p64, s64, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 4096 {
		return t, errBadToken
	}
	// Strict: the unused bits of the last character must be zero, or one
	// token would have several spellings that all verify.
	enc := base64.RawURLEncoding.Strict()
	p, err1 := enc.DecodeString(p64)
	sig, err2 := enc.DecodeString(s64)
	if err1 != nil || err2 != nil {
		return t, errBadToken
	}
	key, err := o.key(ctx)
	if err != nil {
		return t, err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(p)
	if !hmac.Equal(sig, mac.Sum(nil)[:16]) {
		return t, errBadToken
	}
	if err := json.Unmarshal(p, &t); err != nil || t.C == "" {
		return t, errBadToken
	}
	return t, nil
}

var slugRE = regexp.MustCompile(`[^a-z0-9]+`)

func (o *outreach) create(w http.ResponseWriter, r *http.Request) {
	var c Campaign
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", `want {"name": ..., "utm_source"?, "utm_medium"?, "utm_campaign"?}: `+err.Error())
		return
	}
	if strings.TrimSpace(c.Name) == "" {
		reply.Error(w, http.StatusBadRequest, "name", "required")
		return
	}
	if c.ID == "" {
		c.ID = strings.Trim(slugRE.ReplaceAllString(strings.ToLower(c.Name), "-"), "-")
	}
	if c.ID == "" || len(c.ID) > 64 || slugRE.MatchString(strings.ReplaceAll(c.ID, "-", "")) {
		reply.Error(w, http.StatusBadRequest, "id", "lower-case letters, digits and -, at most 64")
		return
	}
	if c.Medium == "" {
		c.Medium = "email"
	}
	if c.Campaign == "" {
		c.Campaign = c.ID
	}
	c.Created = time.Now().UTC()
	kv, err := o.kv(r.Context(), campaignBucket, 0)
	if err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	b, _ := json.Marshal(c)
	if _, err := kv.Create(r.Context(), c.ID, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			reply.Error(w, http.StatusConflict, "id", fmt.Sprintf("campaign %q exists", c.ID))
			return
		}
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	reply.JSON(w, http.StatusCreated, c)
}

func (o *outreach) campaign(ctx context.Context, id string) (*Campaign, error) {
	kv, err := o.kv(ctx, campaignBucket, 0)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var c Campaign
	return &c, json.Unmarshal(e.Value(), &c)
}

// LinkRequest is one link to sign.
type LinkRequest struct {
	URL       string `json:"url"`
	Recipient string `json:"recipient"`
}

func (o *outreach) links(w http.ResponseWriter, r *http.Request) {
	c, err := o.campaign(r.Context(), r.PathValue("id"))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		reply.Error(w, http.StatusNotFound, "id", fmt.Sprintf("no campaign %q", r.PathValue("id")))
		return
	}
	if err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	var req struct {
		Links []LinkRequest `json:"links"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || len(req.Links) == 0 {
		reply.Error(w, http.StatusBadRequest, "links", `want {"links": [{"url": "https://...", "recipient": "..."}]}`)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host
	type out struct {
		LinkRequest
		Click string `json:"click_url"`
		Open  string `json:"open_pixel"`
	}
	res := make([]out, 0, len(req.Links))
	for i, l := range req.Links {
		u, err := url.Parse(l.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			reply.Error(w, http.StatusBadRequest, fmt.Sprintf("links[%d].url", i), "want an absolute http or https URL")
			return
		}
		tok, err := o.sign(r.Context(), linkToken{C: c.ID, U: l.URL, R: l.Recipient})
		if err != nil {
			reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
			return
		}
		res = append(res, out{LinkRequest: l, Click: base + "/c/" + tok, Open: base + "/o/" + tok + ".gif"})
	}
	reply.JSON(w, http.StatusOK, map[string]any{"campaign": c.ID, "links": res})
}

// click records a click and redirects to the target with the campaign's UTM.
func (o *outreach) click(w http.ResponseWriter, r *http.Request) {
	t, err := o.verify(r.Context(), r.PathValue("token"))
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "token", err.Error()+"; not redirecting")
		return
	}
	c, err := o.campaign(r.Context(), t.C)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "token", "unknown campaign; not redirecting")
		return
	}
	target, err := url.Parse(t.U)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "token", "bad target")
		return
	}
	q := target.Query()
	for k, v := range map[string]string{"utm_source": c.Source, "utm_medium": c.Medium, "utm_campaign": c.Campaign} {
		if v != "" && q.Get(k) == "" {
			q.Set(k, v)
		}
	}
	target.RawQuery = q.Encode()
	e, _ := outreachEvent("outreach.click", r, t, map[string]any{"target": t.U}, time.Now().UTC())
	if _, err := o.m.deps.Bus.Publish(r.Context(), []event.Event{e}); err != nil {
		o.m.deps.Logger.Warn("click not recorded", "err", err) // the reader still gets where they were going
	}
	http.Redirect(w, r, target.String(), http.StatusFound)
}

// open records an e-mail open; opens fetched by mail privacy and image
// proxies are marked prefetch; repeats inside an hour count once.
func (o *outreach) open(w http.ResponseWriter, r *http.Request) {
	status := http.StatusOK
	defer func() {
		h := w.Header()
		h.Set("Content-Type", "image/gif")
		h.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
		h.Set("Pragma", "no-cache")
		h.Set("Expires", "0")
		w.WriteHeader(status)
		_, _ = w.Write(gif)
	}()
	tok, ok := strings.CutSuffix(r.PathValue("token"), ".gif")
	if !ok {
		status = http.StatusNotFound
		return
	}
	t, err := o.verify(r.Context(), tok)
	if err != nil {
		status = http.StatusBadRequest
		return
	}
	// Counted once per link and recipient an hour: the key is what the
	// token says, not how it is spelt.
	payload, _ := json.Marshal(t)
	now := time.Now().UTC()
	window := now.Truncate(openWindow)
	kv, err := o.kv(r.Context(), openBucket, 2*openWindow)
	if err != nil {
		status = http.StatusServiceUnavailable
		return
	}
	k := fmt.Sprintf("%x", sha256.Sum256(append(payload, window.String()...)))[:32]
	if _, err := kv.Create(r.Context(), k, []byte{1}); err != nil {
		return // opened already in this window: counted once
	}
	e, _ := outreachEvent("outreach.open", r, t, map[string]any{"prefetch": prefetched(r), "window": window}, now)
	if _, err := o.m.deps.Bus.Publish(r.Context(), []event.Event{e}); err != nil {
		status = http.StatusServiceUnavailable
	}
}

func outreachEvent(typ string, r *http.Request, t linkToken, extra map[string]any, now time.Time) (event.Event, error) {
	d := map[string]any{"campaign": t.C, "recipient": t.R, "url": t.U, "user_agent": r.UserAgent()}
	for k, v := range extra {
		d[k] = v
	}
	b, err := json.Marshal(d)
	h := sha256.Sum256([]byte(fmt.Sprint(typ, t, now.UnixNano())))
	return event.Event{SpecVersion: event.SpecVersion, ID: hex.EncodeToString(h[:16]), Source: "/collector/outreach",
		Type: typ, Subject: t.C, Time: now, DataContentType: "application/json", Data: b}, err
}

// Mail privacy and image proxies fetch images without a reader: Gmail's and
// Yahoo's image proxies say so in their user agents; Apple Mail Privacy
// Protection fetches from Apple's network (17.0.0.0/8).
var (
	proxyAgents = []string{"GoogleImageProxy", "YahooMailProxy", "ggpht.com", "Outlook-iOS-Image-Proxy", "Zmail", "BingPreview"}
	proxyNets   = []netip.Prefix{netip.MustParsePrefix("17.0.0.0/8")}
)

func prefetched(r *http.Request) bool {
	ua := r.UserAgent()
	for _, p := range proxyAgents {
		if strings.Contains(ua, p) {
			return true
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		for _, n := range proxyNets {
			if n.Contains(a.Unmap()) {
				return true
			}
		}
	}
	return false
}

// attribute remembers the campaign a browser visitor arrived through (from
// the landing page's utm_campaign) for a day, and adds it to that visitor's
// later events that carry none.
func (o *outreach) attribute(ctx context.Context, visitor string, evs []event.Event) {
	if visitor == "" || len(evs) == 0 {
		return
	}
	kv, err := o.kv(ctx, attrBucket, 24*time.Hour)
	if err != nil {
		return
	}
	for i := range evs {
		var m map[string]any
		if json.Unmarshal(evs[i].Data, &m) != nil || m["anonymousId"] != visitor {
			continue
		}
		c, _ := m["context"].(map[string]any)
		if c == nil {
			c = map[string]any{}
			m["context"] = c
		}
		camp, _ := c["campaign"].(map[string]any)
		if len(camp) > 0 {
			b, _ := json.Marshal(camp)
			_, _ = kv.Put(ctx, visitor, b)
			continue
		}
		e, err := kv.Get(ctx, visitor)
		if err != nil {
			continue
		}
		var saved map[string]any
		if json.Unmarshal(e.Value(), &saved) != nil {
			continue
		}
		saved["attributed"] = true
		c["campaign"] = saved
		if b, err := json.Marshal(m); err == nil {
			evs[i].Data = b
		}
	}
}

// OutboundLink returns the path of a signed redirect to target that
// records the click (the proxy rewrites outbound links in pages to it);
// from is the page the link was on.
func (m *Module) OutboundLink(ctx context.Context, target, from string) (string, error) {
	tok, err := m.out.sign(ctx, linkToken{C: outboundCampaign, U: target, R: from})
	if err != nil {
		return "", err
	}
	return "/out/" + tok, nil
}

// outboundCampaign marks tokens of rewritten outbound links.
const outboundCampaign = "~out"

// outbound records a click on a rewritten outbound link as
// ev.proxy.outbound and redirects; a token that does not verify gets 400
// and no redirect, so this is no open redirect.
func (o *outreach) outbound(w http.ResponseWriter, r *http.Request) {
	t, err := o.verify(r.Context(), r.PathValue("token"))
	if err != nil || t.C != outboundCampaign {
		reply.Error(w, http.StatusBadRequest, "token", errBadToken.Error()+"; not redirecting")
		return
	}
	target, err := url.Parse(t.U)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") {
		reply.Error(w, http.StatusBadRequest, "token", "bad target")
		return
	}
	ev, err := event.New("ops/proxy", "proxy.outbound", map[string]any{
		"target": t.U, "target_host": target.Hostname(), "from": t.R, "host": r.Host, "user_agent": r.UserAgent(),
	})
	if err == nil {
		if _, err := o.m.deps.Bus.Publish(r.Context(), []event.Event{ev}); err != nil {
			o.m.deps.Logger.Warn("outbound click not recorded", "err", err) // the reader still goes on
		}
	}
	w.Header().Set("Referrer-Policy", "origin")
	http.Redirect(w, r, t.U, http.StatusFound)
}
