package config

import (
	"fmt"
	"html/template"
	"net/netip"
	"os"
	"strings"
	"time"
)

// ProxyForward is the explicit forward proxy for people browsing out
// (docs/forward.md). It runs when listen is set.
type ProxyForward struct {
	Listen       string            `yaml:"listen" doc:"address of the forward proxy browsers and tools set as their HTTP proxy, e.g. 0.0.0.0:3128; empty: off"`
	Auth         string            `yaml:"auth" doc:"basic: clients give Proxy-Authorization (an Ops user's password, LDAP, or an API token as the password), 407 without; none: anyone who can reach the port"`
	Default      string            `yaml:"default" doc:"what a host no rule matches gets: allow or block"`
	Rules        []ForwardRule     `yaml:"rules" doc:"in order, the first matching rule decides: hosts, and optionally users, groups and client networks"`
	AllowPorts   []int             `yaml:"allow_ports" doc:"ports CONNECT may tunnel to (HTTPS by default; SMTP and the like are not for browsers)"`
	DenyNetworks Strings           `yaml:"deny_networks" doc:"addresses the proxy never connects to, whatever the name resolves to (loopback, link-local and cloud metadata by default)"`
	DenyOwn      bool              `yaml:"deny_own_addresses" doc:"never connect to an address of this machine's own interfaces (its LAN address too), so Ops's API and other local services stay out of reach through the proxy"`
	IdleTimeout  Duration          `yaml:"idle_timeout" doc:"a tunnel with no byte either way for this long is closed"`
	PACProxy     string            `yaml:"pac_proxy" doc:"host:port the PAC file tells browsers to use (what they can reach); empty: the listen address"`
	PACDirect    Strings           `yaml:"pac_direct" doc:"host patterns the PAC file sends direct, not through the proxy (shExpMatch syntax, e.g. *.corp.example)"`
	Hosts        map[string]string `yaml:"hosts" doc:"names the proxy resolves itself, name: address (like /etc/hosts, before DNS); deny_networks still applies to them"`
	Filter       ForwardFilter     `yaml:"filter"`
	Intercept    ForwardIntercept  `yaml:"intercept"`
}

// ForwardIntercept is TLS interception (docs/forward.md, "TLS
// interception").
type ForwardIntercept struct {
	Enabled    bool    `yaml:"enabled" doc:"open HTTPS tunnels with a certificate from Ops's own CA, so pages are filtered and scanned like plain HTTP; clients must trust the CA (ops ca export)"`
	Bypass     Strings `yaml:"bypass" doc:"hosts never intercepted, tunnelled as they are (banks, health, apps that pin their certificates): example.com (and subdomains), *.example.com"`
	CACert     string  `yaml:"ca_cert" doc:"the CA certificate (PEM) to sign with; empty: one Ops makes in <data_dir>/forward-ca/"`
	CAKey      string  `yaml:"ca_key" doc:"its private key (PEM)"`
	UpstreamCA string  `yaml:"upstream_ca" doc:"CA certificates (PEM) sites' certificates are checked against instead of the system's"`
}

// ForwardFilter is the content filter (docs/forward.md, "Content filter").
type ForwardFilter struct {
	Enabled    bool     `yaml:"enabled" doc:"classify every request (URL, search words) and HTML page (its text) into categories; rules with categories, and each category's own action, decide"`
	Categories string   `yaml:"categories" doc:"directory of category folders (category.conf and rule files, redwood's layout); empty: the starter set built into Ops"`
	Threshold  int      `yaml:"threshold" doc:"a page belongs to its top-scoring category when the score is at least this"`
	ScanBytes  ByteSize `yaml:"scan_bytes" doc:"how much of an HTML page (decoded) is scanned for phrases; the rest streams through unscanned"`
	Reload     Duration `yaml:"reload" doc:"how often the directory is checked for changed rule files and list_url lists are fetched again (ETag-aware)"`
	SafeSearch bool     `yaml:"safe_search" doc:"enforce Google, Bing, DuckDuckGo and Yahoo safe search and YouTube restricted mode (tunnels go to the engines' enforcement addresses; plain requests are rewritten)"`
	WarnFor    Duration `yaml:"warn_for" doc:"after a person clicks through a warn page, the same host and category pass for them this long"`
	BlockPage  string   `yaml:"block_page" doc:"Go html/template file for the block page (fields: Category, Description, Host, URL, User, RequestID, Reason, ReviewURL, ReviewToken); empty: Ops's own"`
	WarnPage   string   `yaml:"warn_page" doc:"Go html/template file for the warn page (the block page's fields and ContinueURL); empty: Ops's own"`
}

// ForwardRule decides for the hosts it names.
type ForwardRule struct {
	Name     string  `yaml:"name"`
	Hosts    Strings `yaml:"hosts"` // example.com (and its subdomains), *.example.com, *, an address or CIDR
	Users    Strings `yaml:"users"`
	Groups   Strings `yaml:"groups"`
	Networks Strings `yaml:"networks"` // client addresses or CIDRs
	// Categories: the rule matches only a request or page classified in
	// one of them (proxy.forward.filter).
	Categories Strings `yaml:"categories"`
	// Times: when the rule applies, in the server's time zone, e.g.
	// "mon-fri 08:00-18:00", "sat,sun", "22:00-06:00".
	Times  Strings `yaml:"times"`
	Action string  `yaml:"action"` // allow, block, warn or log
}

func defaultForward() ProxyForward {
	return ProxyForward{Auth: "basic", Default: "allow", AllowPorts: []int{443}, DenyOwn: true,
		DenyNetworks: Strings{"127.0.0.0/8", "::1/128", "0.0.0.0/8", "169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128"},
		IdleTimeout:  Duration(5 * time.Minute),
		Filter:       ForwardFilter{Threshold: 100, ScanBytes: 256 << 10, Reload: Duration(time.Minute), WarnFor: Duration(time.Hour)}}
}

func (c *Config) validateForward(add func(path, format string, a ...any)) {
	f := c.Proxy.Forward
	if f.Listen == "" {
		return
	}
	if err := checkListen(f.Listen); err != nil {
		add("proxy.forward.listen", "%v", err)
	}
	if f.Auth != "basic" && f.Auth != "none" {
		add("proxy.forward.auth", "want basic or none, got %q", f.Auth)
	}
	if f.Default != "allow" && f.Default != "block" {
		add("proxy.forward.default", "want allow or block, got %q", f.Default)
	}
	for i, p := range f.AllowPorts {
		if p < 1 || p > 65535 {
			add(fmt.Sprintf("proxy.forward.allow_ports[%d]", i), "want a port (1-65535), got %d", p)
		}
	}
	prefix := func(path, s string) {
		if _, err := netip.ParsePrefix(s); err == nil {
			return
		}
		if _, err := netip.ParseAddr(s); err != nil {
			add(path, "want an address or a CIDR, got %q", s)
		}
	}
	for name, addr := range f.Hosts {
		if _, err := netip.ParseAddr(addr); err != nil {
			add("proxy.forward.hosts."+name, "want an IP address, got %q", addr)
		}
	}
	for i, n := range f.DenyNetworks {
		prefix(fmt.Sprintf("proxy.forward.deny_networks[%d]", i), n)
	}
	for i, r := range f.Rules {
		path := fmt.Sprintf("proxy.forward.rules[%d]", i)
		if r.Action != "allow" && r.Action != "block" && r.Action != "warn" && r.Action != "log" {
			add(path+".action", "want allow, block, warn or log, got %q", r.Action)
		}
		if len(r.Hosts) == 0 && len(r.Categories) == 0 {
			add(path+".hosts", "must not be empty (use [\"*\"] for every host) unless categories are given")
		}
		if len(r.Categories) > 0 && !f.Filter.Enabled {
			add(path+".categories", "names categories, but proxy.forward.filter.enabled is false: nothing is classified")
		}
		for _, t := range r.Times {
			if _, err := ParseTimeWindow(t); err != nil {
				add(path+".times", "%v", err)
			}
		}
		for _, h := range r.Hosts {
			if strings.TrimSpace(h) == "" || strings.ContainsAny(h, " \t") {
				add(path+".hosts", "%q is not a host pattern", h)
			}
		}
		for _, n := range r.Networks {
			prefix(path+".networks", n)
		}
		if (len(r.Users) > 0 || len(r.Groups) > 0) && f.Auth == "none" {
			add(path, "names users or groups, but proxy.forward.auth is none: nobody is known")
		}
	}
	f.validateFilter(add)
	ic := f.Intercept
	if ic.Enabled {
		if (ic.CACert == "") != (ic.CAKey == "") {
			add("proxy.forward.intercept.ca_key", "ca_cert and ca_key go together (or neither: Ops makes a CA)")
		}
		for _, h := range ic.Bypass {
			if strings.TrimSpace(h) == "" || strings.ContainsAny(h, " \t/") {
				add("proxy.forward.intercept.bypass", "%q is not a host pattern", h)
			}
		}
	}
}

func (f ProxyForward) validateFilter(add func(path, format string, a ...any)) {
	ff := f.Filter
	if !ff.Enabled {
		return
	}
	if ff.Threshold < 1 || ff.Threshold > 1_000_000 {
		add("proxy.forward.filter.threshold", "want 1 to 1000000, got %d", ff.Threshold)
	}
	if ff.ScanBytes < 1<<10 || ff.ScanBytes > 16<<20 {
		add("proxy.forward.filter.scan_bytes", "want 1KiB to 16MiB, got %d", ff.ScanBytes)
	}
	if ff.Reload < Duration(time.Second) {
		add("proxy.forward.filter.reload", "want at least 1s, got %s", ff.Reload)
	}
	if ff.WarnFor < Duration(time.Minute) || ff.WarnFor > Duration(30*24*time.Hour) {
		add("proxy.forward.filter.warn_for", "want 1m to 720h, got %s", ff.WarnFor)
	}
	if ff.Categories != "" {
		if st, err := os.Stat(ff.Categories); err != nil || !st.IsDir() {
			add("proxy.forward.filter.categories", "%q is not a directory", ff.Categories)
		}
	}
	for path, file := range map[string]string{"proxy.forward.filter.block_page": ff.BlockPage, "proxy.forward.filter.warn_page": ff.WarnPage} {
		if file == "" {
			continue
		}
		if _, err := template.ParseFiles(file); err != nil {
			add(path, "%v", err)
		}
	}
}

// TimeWindow is when a forward proxy rule applies: days of the week and
// a span of the day (which may pass midnight), in local time.
type TimeWindow struct {
	Days     [7]bool // time.Weekday
	From, To int     // minutes since midnight; From == To: the whole day
}

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseTimeWindow reads "mon-fri 08:00-18:00", "sat,sun", "22:00-06:00"
// (every day), "mon,wed 12:00-13:00".
func ParseTimeWindow(s string) (TimeWindow, error) {
	var w TimeWindow
	fields := strings.Fields(strings.ToLower(s))
	if len(fields) == 0 || len(fields) > 2 {
		return w, fmt.Errorf("%q: want [days] [HH:MM-HH:MM], e.g. \"mon-fri 08:00-18:00\"", s)
	}
	days, span := "", ""
	for _, f := range fields {
		if strings.ContainsAny(f, "0123456789") {
			span = f
		} else {
			days = f
		}
	}
	if days == "" {
		w.Days = [7]bool{true, true, true, true, true, true, true}
	}
	for _, part := range strings.Split(days, ",") {
		if part == "" {
			continue
		}
		a, b, rng := strings.Cut(part, "-")
		da, ok1 := dayNames[a]
		db, ok2 := dayNames[b]
		if !ok1 || rng && !ok2 {
			return w, fmt.Errorf("%q: days: want mon, tue, wed, thu, fri, sat, sun or a range like mon-fri", s)
		}
		if !rng {
			db = da
		}
		for d := da; ; d = (d + 1) % 7 {
			w.Days[d] = true
			if d == db {
				break
			}
		}
	}
	if span != "" {
		a, b, ok := strings.Cut(span, "-")
		from, err1 := clock(a)
		to, err2 := clock(b)
		if !ok || err1 != nil || err2 != nil {
			return w, fmt.Errorf("%q: time: want HH:MM-HH:MM, e.g. 08:00-18:00", s)
		}
		w.From, w.To = from, to
	}
	return w, nil
}

func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		if s == "24:00" {
			return 24 * 60, nil
		}
		return 0, err
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Contains reports whether t (in its own location) is in the window. A
// span that passes midnight belongs to the day it starts on.
func (w TimeWindow) Contains(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	switch {
	case w.From == w.To:
		return w.Days[day]
	case w.From < w.To:
		return w.Days[day] && m >= w.From && m < w.To
	default: // passes midnight
		if m >= w.From {
			return w.Days[day]
		}
		return m < w.To && w.Days[(day+6)%7]
	}
}
