package dnsd

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/reply"
)

// The client check (like Cloudflare's 1.1.1.1/help): a page at
// /_ops/dns-check makes the browser resolve a name nobody asked before,
// <token>.<dns.check_domain>. If the browser's DNS is Ops, the resolver
// answers that name itself and notes the transport the query came over;
// the page then asks /_ops/dns-check/result?token=... which says whether
// the browser's DNS goes through Ops, and whether encrypted (DoH over
// TLS, or DoT). A name under check_domain never goes upstream.

// checkSeen keeps which transport saw each token, for a few minutes.
type checkSeen struct {
	mu   sync.Mutex
	seen map[string]seenQuery
}

type seenQuery struct {
	via       string
	encrypted bool
	at        time.Time
}

const (
	checkKeep   = 5 * time.Minute
	maxCheckLen = 10_000 // tokens held at most (the oldest go first)
)

func (c *checkSeen) note(token, via string, encrypted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.seen) >= maxCheckLen {
		for k, v := range c.seen {
			if now.Sub(v.at) > checkKeep || len(c.seen) >= maxCheckLen {
				delete(c.seen, k)
			}
		}
	}
	if _, ok := c.seen[token]; !ok { // the first transport that asked
		c.seen[token] = seenQuery{via: via, encrypted: encrypted, at: now}
	}
}

func (c *checkSeen) get(token string) (seenQuery, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q, ok := c.seen[token]
	return q, ok && time.Since(q.at) < checkKeep
}

// checkToken returns the token when name is <token>.<check_domain>.
func (s *Server) checkToken(name string) (string, bool) {
	if s.checkDomain == "" {
		return "", false
	}
	tok, ok := strings.CutSuffix(name, "."+s.checkDomain)
	if !ok || tok == "" || strings.Contains(tok, ".") {
		return "", ok
	}
	return tok, true
}

// checkAnswer answers a name under check_domain from Ops itself.
func (s *Server) checkAnswer(req *dns.Msg, token, via string, encrypted bool) *dns.Msg {
	if token != "" && len(token) <= 64 {
		s.checks.note(token, via, encrypted)
	}
	m := rcodeReply(req, dns.RcodeSuccess)
	m.Authoritative = true
	q := req.Question[0]
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Rrtype: q.Qtype, Ttl: 0}
	a := s.checkAddr
	switch {
	case q.Qtype == dns.TypeA && a.Is4():
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: a.AsSlice()}}
	case q.Qtype == dns.TypeAAAA && a.Is6():
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()}}
	}
	return m
}

// checkPing answers the page's image load when the check names point at
// Ops (nothing to see: the DNS query was the point).
func (s *Server) checkPing(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// checkPage serves the page; result answers its question.
func (s *Server) checkPage(w http.ResponseWriter, r *http.Request) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; connect-src 'self'; img-src *; style-src 'unsafe-inline'")
	page := strings.NewReplacer("{{TOKEN}}", token, "{{DOMAIN}}", s.checkDomain).Replace(checkHTML)
	_, _ = w.Write([]byte(page))
}

func (s *Server) checkResult(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	if token == "" || len(token) > 64 {
		reply.Error(w, http.StatusBadRequest, "token", "token: want the page's token")
		return
	}
	q, seen := s.checks.get(token)
	out := map[string]any{"token": token, "through_ops": seen}
	if seen {
		out["transport"], out["encrypted"] = q.via, q.encrypted
	}
	w.Header().Set("Cache-Control", "no-store")
	reply.JSON(w, http.StatusOK, out)
	if r.URL.Query().Get("final") == "1" {
		data := map[string]any{"through_ops": seen, "transport": q.via, "encrypted": q.encrypted, "user_agent": r.UserAgent()}
		if s.deps.ClientIP != nil {
			if a := s.deps.ClientIP(r); a.IsValid() {
				data["client"] = clientip.Anonymize(a).String()
			}
		}
		if s.events != nil {
			bs, _ := json.Marshal(data)
			s.events.Add(event.NewJSON("ops/dns", "dns.client_check", bs))
		}
	}
}

const checkHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Is my DNS private?</title>
<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}#v{font-size:1.4em;font-weight:600}</style>
</head><body>
<h1>Is my DNS private?</h1>
<p id="v">Checking…</p>
<p id="d"></p>
<script>
(function(){
  var token = "{{TOKEN}}", v = document.getElementById("v"), d = document.getElementById("d");
  var img = new Image();
  img.src = "https://" + token + ".{{DOMAIN}}/_ops/dns-check/ping?" + Date.now();
  var tries = 0;
  function ask(final) {
    fetch("dns-check/result?token=" + token + (final ? "&final=1" : ""), {cache: "no-store"}).then(function(r){ return r.json(); }).then(function(res){
      if (res.through_ops) {
        if (!final) { ask(true); return; }
        v.textContent = res.encrypted ? "Yes: your DNS goes through Ops, encrypted (" + res.transport + ")." : "Your DNS goes through Ops, but not encrypted (" + res.transport + ").";
        d.textContent = res.encrypted ? "Nobody between you and Ops can read or change your DNS." : "Set your browser's or system's secure DNS to this site's /_ops/dns-query.";
      } else if (++tries < 10) {
        setTimeout(function(){ ask(false); }, 500);
      } else {
        if (!final) { ask(true); return; }
        v.textContent = "No: your DNS does not go through Ops.";
        d.textContent = "Your device asks another resolver. Set secure DNS to this site's /_ops/dns-query.";
      }
    });
  }
  setTimeout(function(){ ask(false); }, 300);
})();
</script>
</body></html>
`
