package forward

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/phish"
	"github.com/opsgraph/ops/internal/policy"
	"github.com/opsgraph/ops/internal/webfilter"
)

// reqState is one request's decision so far, carried to the response
// (where the page's text may change it).
type reqState struct {
	b      *browse
	id     *identity.Identity
	client netip.Addr
	host   string
	path   string // canonical; "" for tunnels
	who    string // the user, or the client address when nobody signed in
	start  time.Time
	set    *webfilter.Set
	sc     *webfilter.Scores
	rule   string // the rule that decided
	denied string // block or warn when the response was replaced
	phish  *phish.Verdict
	inner  bool // a request inside an intercepted tunnel
}

// phishInfo is what an ev.proxy.browse event says of a phishing verdict.
type phishInfo struct {
	Score   int      `json:"score"`
	Action  string   `json:"action"`
	Reasons []string `json:"reasons"`
}

type stateKey struct{}

func whoKey(id *identity.Identity, client netip.Addr) string {
	if id != nil {
		return "user:" + id.User
	}
	return "ip:" + client.String()
}

// decideFor classifies (if the filter is on) and decides: POLICY browse
// entries first (an admin's allow or block of a host or path, for
// everyone or a group), then the rules in order, then the page's
// category's own action, then proxy.forward.default.
func (p *Proxy) decideFor(st *reqState) (string, string) {
	st.b.Category, st.b.Score = "", 0
	st.b.Category, st.b.Score = p.filter.categoryOf(st.sc)
	st.b.Scores = topScores(st.sc)
	if a, name := p.policy.browse(st.host, st.path, st.id); a != "" {
		st.rule, st.b.Rule = name, name
		return a, name
	}
	if v := st.phish; v != nil && v.Score > 0 {
		info := &phishInfo{Score: v.Score, Action: v.Action}
		for _, r := range v.Reasons {
			info.Reasons = append(info.Reasons, r.Detail)
		}
		st.b.Phish = info
		if v.Action == "block" || v.Action == "warn" {
			st.b.Category, st.b.Score = "phishing", v.Score
			st.b.Reason = "phishing: " + strings.Join(info.Reasons, "; ")
			st.rule, st.b.Rule = "phishing", "phishing"
			return v.Action, "phishing"
		}
	}
	action, name := p.decide(st.host, st.b.Category, st.id, st.client, time.Now())
	if name == "default" && st.b.Category != "" && st.set != nil {
		if c, ok := st.set.Category(st.b.Category); ok {
			action, name = c.Action, "category "+c.Name
		}
	}
	st.rule, st.b.Rule = name, name
	return action, name
}

// refuse answers a blocked or warned request: the block or warn page for
// plain HTTP (the filter's templates), a short page for tunnels (which a
// browser does not show) and when the filter is off.
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, st *reqState, action string) {
	st.b.RequestID = event.NewID()
	if p.filter == nil || r.Method == http.MethodConnect {
		msg := "The proxy's policy does not allow this (" + st.b.Reason + "). Request " + st.b.RequestID + "."
		if action == "warn" {
			msg = "This host is classed as " + st.b.Category + ": open it over plain HTTP once to see the warning and go on, or ask for it to be allowed. Request " + st.b.RequestID + "."
		}
		page(w, http.StatusForbidden, "Blocked: "+st.host, msg)
		return
	}
	body := p.filter.pageFor(st, r.URL, action)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write(body)
}

// pageFor renders the block or warn page for st.
func (f *filter) pageFor(st *reqState, u *url.URL, action string) []byte {
	d := pageData{Category: st.b.Category, Host: st.host, URL: u.String(), RequestID: st.b.RequestID, Reason: st.b.Reason, Score: st.b.Score}
	if st.id != nil {
		d.User = st.id.User
	}
	if st.set != nil {
		if c, ok := st.set.Category(d.Category); ok {
			d.Description = c.Description
		}
	}
	if d.Category == "phishing" {
		d.Description = "a page that pretends to be another site to take your password"
	}
	var buf bytes.Buffer
	t := f.block
	if action == "warn" {
		t = f.warn
		until := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
		q := url.Values{"u": {u.String()}, "c": {d.Category}, "e": {until}, "t": {f.sign("continue", st.who, st.host, d.Category, until)}}
		d.ContinueURL = continuePath + "?" + q.Encode()
	} else {
		d.ReviewURL = reviewPath
		d.ReviewToken = f.sign("review", st.who, st.host, d.Category, d.RequestID)
	}
	if err := t.Execute(&buf, d); err != nil {
		f.log.Warn("page template failed", "err", err)
	}
	return buf.Bytes()
}

// serveContinue is the warn page's link: signed for this person, host
// and category, it lets them through for warn_for and sends them on to
// the page they asked for (on the same host only).
func (p *Proxy) serveContinue(w http.ResponseWriter, r *http.Request, st *reqState) {
	q := r.URL.Query()
	cat, until, to := q.Get("c"), q.Get("e"), q.Get("u")
	dest, err := url.Parse(to)
	ok := err == nil && expiryOK(until) &&
		hmacEqual(q.Get("t"), p.filter.sign("continue", st.who, st.host, cat, until))
	if ok {
		h, herr := webfilter.CanonHost(dest.Hostname())
		ok = herr == nil && h == st.host && (dest.Scheme == "http" || dest.Scheme == "https")
	}
	if !ok {
		st.b.Action, st.b.Status, st.b.Reason = "error", http.StatusForbidden, errBadLink.Error()
		p.record(st.b, st.start)
		page(w, http.StatusForbidden, "Link not valid", errBadLink.Error()+": open the page again to get a new one.")
		return
	}
	p.filter.pass(st.who, st.host, cat)
	st.b.Action, st.b.Category, st.b.Status = "continue", cat, http.StatusSeeOther
	st.b.Path = dest.Path
	p.record(st.b, st.start)
	http.Redirect(w, r, dest.String(), http.StatusSeeOther)
}

// review is the data of an ev.proxy.review event.
type review struct {
	RequestID string `json:"request_id"`
	User      string `json:"user,omitempty"`
	Client    string `json:"client,omitempty"`
	Host      string `json:"host"`
	URL       string `json:"url"`
	Category  string `json:"category,omitempty"`
	Comment   string `json:"comment,omitempty"`
}

// serveReview takes the block page's "ask for a review" form: an
// ev.proxy.review event and the ops_forward_review_requests_total
// counter an alert rule can watch.
func (p *Proxy) serveReview(w http.ResponseWriter, r *http.Request, st *reqState) {
	if r.Method != http.MethodPost {
		page(w, http.StatusMethodNotAllowed, "Method not allowed", "method: the review form is sent with POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		page(w, http.StatusBadRequest, "Bad request", "body: want the review form's fields ("+err.Error()+")")
		return
	}
	rid, cat := r.PostForm.Get("id"), r.PostForm.Get("c")
	if rid == "" || !hmacEqual(r.PostForm.Get("t"), p.filter.sign("review", st.who, st.host, cat, rid)) {
		page(w, http.StatusForbidden, "Form not valid", "t: this review form was not made for you; open the page again")
		return
	}
	comment := r.PostForm.Get("comment")
	if len(comment) > 2000 {
		comment = comment[:2000]
	}
	rv := review{RequestID: rid, Host: st.host, URL: truncateURL(r.PostForm.Get("u")), Category: cat, Comment: comment, Client: st.b.Client}
	if st.id != nil {
		rv.User = st.id.User
	}
	if p.events != nil {
		data, _ := json.Marshal(rv)
		ev := event.NewJSON("ops/forward", "proxy.review", data)
		p.events.Add(ev)
	}
	p.reviews.WithLabelValues(cat).Inc()
	page(w, http.StatusOK, "Review requested", "Thank you: your request "+rid+" was sent to the people who run the filter.")
}

func truncateURL(s string) string {
	if len(s) > 2048 {
		return s[:2048]
	}
	return s
}

func hmacEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// scanResponse reads the start of an HTML page (decoded, up to
// scan_bytes), adds its phrases to the request's scores and decides
// again; a page that now classifies into a blocked (or warned) category
// is replaced by the block (or warn) page. Nothing the upstream sent is
// lost when it passes: the bytes read are sent first, then the rest.
func (p *Proxy) scanResponse(resp *http.Response) error {
	st, _ := resp.Request.Context().Value(stateKey{}).(*reqState)
	if st == nil || st.sc == nil && st.phish == nil || st.rule == "policy" || st.denied != "" || resp.StatusCode != http.StatusOK || !isHTML(resp.Header.Get("Content-Type")) {
		return nil
	}
	n := int(p.filter.cfg.ScanBytes)
	if n <= 0 {
		n = 256 << 10
	}
	dec, raw, err := webfilter.Peek(resp.Body, resp.Header.Get("Content-Encoding"), n, 4*n+64<<10)
	orig := resp.Body
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(raw), orig), orig}
	if err != nil {
		p.log.Debug("page not scanned", "host", st.host, "err", err)
		return nil
	}
	pg := webfilter.ParseHTML(dec)
	if st.sc != nil {
		st.sc.Normalized(pg.Text)
	}
	if st.phish != nil && pg.PasswordForm {
		p.deps.Phish.Page(st.phish, pg.Title, string(pg.Text), true, pg.FormActions)
	}
	st.b.Scanned = len(dec)
	action, name := p.decideFor(st)
	if action != "block" && !(action == "warn" && !p.filter.passed(st.who, st.host, st.b.Category)) {
		if action == "log" || action == "allow" {
			st.b.Action = action
		}
		return nil
	}
	orig.Close()
	st.denied = action
	st.b.Action, st.b.Reason = action, "rule "+name+" (page content)"
	st.b.RequestID = event.NewID()
	body := p.filter.pageFor(st, resp.Request.URL, action)
	resp.StatusCode, resp.Status = http.StatusForbidden, "403 Forbidden"
	resp.Header = http.Header{"Content-Type": {"text/html; charset=utf-8"}, "Cache-Control": {"no-store"}, "Content-Length": {strconv.Itoa(len(body))}}
	resp.ContentLength = int64(len(body))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	p.n.WithLabelValues("http", action).Inc()
	return nil
}

func isHTML(ct string) bool {
	ct = strings.ToLower(ct)
	return strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "application/xhtml+xml")
}

// browsePolicy mirrors the POLICY bucket's browse entries.
type browsePolicy struct {
	mu sync.RWMutex
	m  map[string]policy.Entry
}

func (bp *browsePolicy) watch(ctx context.Context, p *Proxy) {
	store, err := policy.Open(ctx, p.deps.Bus)
	if err != nil {
		p.log.Error("POLICY bucket: browse entries will not apply", "err", err)
		return
	}
	store.Watch(ctx, p.log, func(key string, e *policy.Entry) {
		bp.mu.Lock()
		defer bp.mu.Unlock()
		if e == nil {
			delete(bp.m, key)
		} else if e.Kind == policy.Browse {
			bp.m[key] = *e
		}
	})
}

// browse is the POLICY entry's action for host and path (the most
// specific entry wins: a group's over everyone's, a longer path over a
// shorter), or "".
func (bp *browsePolicy) browse(host, path string, id *identity.Identity) (string, string) {
	if bp == nil {
		return "", ""
	}
	bp.mu.RLock()
	defer bp.mu.RUnlock()
	if len(bp.m) == 0 {
		return "", ""
	}
	now := time.Now()
	best, bestLen := "", -1
	for _, e := range bp.m {
		if !e.Active(now) {
			continue
		}
		sub := e.Subject
		weight := 0
		if g, rest, ok := strings.Cut(sub, ":"); ok {
			if id == nil || !inGroups(g, id.Groups) {
				continue
			}
			sub, weight = rest, 1<<20
		}
		h, pfx, _ := strings.Cut(sub, "/")
		if host != h && !strings.HasSuffix(host, "."+h) {
			continue
		}
		if pfx != "" {
			pfx = "/" + pfx
			if path == "" || !(path == pfx || strings.HasPrefix(path, strings.TrimSuffix(pfx, "/")+"/")) {
				continue
			}
		}
		if l := weight + len(h) + len(pfx); l > bestLen {
			best, bestLen = e.Action, l
		}
	}
	if best == "" {
		return "", ""
	}
	return best, "policy"
}

func inGroups(g string, groups []string) bool {
	for _, x := range groups {
		if strings.EqualFold(x, g) {
			return true
		}
	}
	return false
}
