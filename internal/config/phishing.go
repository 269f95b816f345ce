package config

import (
	"fmt"
	"strings"
	"time"
)

// Phishing is phishing protection (docs/forward.md, "Phishing"): on when
// protect or feeds are set; the forward proxy and the resolver ask it.
type Phishing struct {
	Protect       Strings     `yaml:"protect" doc:"your brands' domains (e.g. paypal.com, paypal.me): names that look like them are lookalikes, and a page elsewhere that shows their name with a password form is flagged"`
	Feeds         []PhishFeed `yaml:"feeds" doc:"lists of phishing URLs or domains, files or http(s) URLs: {source, format: openphish|urlhaus|phishtank|domains}"`
	Refresh       Duration    `yaml:"refresh" doc:"how often feeds are read again (URLs with If-None-Match); a failed read keeps the feed's last entries"`
	NewDomainDays int         `yaml:"new_domain_days" doc:"a suspicious domain first seen (by the proxy or the resolver) within this many days scores higher; 0: off"`
	BlockScore    int         `yaml:"block_score" doc:"a verdict scoring at least this is blocked (a feed hit scores 100, a confusable lookalike 80, a typo 60)"`
	WarnScore     int         `yaml:"warn_score" doc:"at least this (and under block_score) gets a warning the person can click through; under it, logged"`
}

// PhishFeed is one feed.
type PhishFeed struct {
	Source string `yaml:"source"`
	Format string `yaml:"format"`
}

// Enabled reports whether phishing protection is configured.
func (p Phishing) Enabled() bool { return len(p.Protect) > 0 || len(p.Feeds) > 0 }

func (c *Config) validatePhishing(add func(path, format string, a ...any)) {
	p := c.Phishing
	if !p.Enabled() {
		return
	}
	for i, d := range p.Protect {
		if strings.TrimSpace(d) == "" || strings.ContainsAny(d, " /:") {
			add(fmt.Sprintf("phishing.protect[%d]", i), "want a domain such as paypal.com, got %q", d)
		}
	}
	for i, f := range p.Feeds {
		path := fmt.Sprintf("phishing.feeds[%d]", i)
		switch f.Format {
		case "openphish", "urlhaus", "phishtank", "domains":
		default:
			add(path+".format", "want openphish, urlhaus, phishtank or domains, got %q", f.Format)
		}
		if f.Source == "" {
			add(path+".source", "want a file or an http(s) URL")
		}
	}
	if p.Refresh < Duration(time.Minute) {
		add("phishing.refresh", "want at least 1m, got %s", p.Refresh)
	}
	if p.NewDomainDays < 0 || p.NewDomainDays > 365 {
		add("phishing.new_domain_days", "want 0 to 365, got %d", p.NewDomainDays)
	}
	if p.WarnScore < 1 || p.BlockScore < p.WarnScore {
		add("phishing.block_score", "want warn_score >= 1 and block_score >= warn_score, got %d and %d", p.WarnScore, p.BlockScore)
	}
}
