package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ProxyForward is the explicit forward proxy for people browsing out
// (docs/forward.md). It runs when listen is set.
type ProxyForward struct {
	Listen       string        `yaml:"listen" doc:"address of the forward proxy browsers and tools set as their HTTP proxy, e.g. 0.0.0.0:3128; empty: off"`
	Auth         string        `yaml:"auth" doc:"basic: clients give Proxy-Authorization (an Ops user's password, LDAP, or an API token as the password), 407 without; none: anyone who can reach the port"`
	Default      string        `yaml:"default" doc:"what a host no rule matches gets: allow or block"`
	Rules        []ForwardRule `yaml:"rules" doc:"in order, the first matching rule decides: hosts, and optionally users, groups and client networks"`
	AllowPorts   []int         `yaml:"allow_ports" doc:"ports CONNECT may tunnel to (HTTPS by default; SMTP and the like are not for browsers)"`
	DenyNetworks Strings       `yaml:"deny_networks" doc:"addresses the proxy never connects to, whatever the name resolves to (loopback, link-local and cloud metadata by default)"`
	DenyOwn      bool          `yaml:"deny_own_addresses" doc:"never connect to an address of this machine's own interfaces (its LAN address too), so Ops's API and other local services stay out of reach through the proxy"`
	IdleTimeout  Duration      `yaml:"idle_timeout" doc:"a tunnel with no byte either way for this long is closed"`
	PACProxy     string        `yaml:"pac_proxy" doc:"host:port the PAC file tells browsers to use (what they can reach); empty: the listen address"`
	PACDirect    Strings       `yaml:"pac_direct" doc:"host patterns the PAC file sends direct, not through the proxy (shExpMatch syntax, e.g. *.corp.example)"`
}

// ForwardRule decides for the hosts it names.
type ForwardRule struct {
	Name     string  `yaml:"name"`
	Hosts    Strings `yaml:"hosts"` // example.com (and its subdomains), *.example.com, *, an address or CIDR
	Users    Strings `yaml:"users"`
	Groups   Strings `yaml:"groups"`
	Networks Strings `yaml:"networks"` // client addresses or CIDRs
	Action   string  `yaml:"action"`   // allow or block
}

func defaultForward() ProxyForward {
	return ProxyForward{Auth: "basic", Default: "allow", AllowPorts: []int{443}, DenyOwn: true,
		DenyNetworks: Strings{"127.0.0.0/8", "::1/128", "0.0.0.0/8", "169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128"},
		IdleTimeout:  Duration(5 * time.Minute)}
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
	for i, n := range f.DenyNetworks {
		prefix(fmt.Sprintf("proxy.forward.deny_networks[%d]", i), n)
	}
	for i, r := range f.Rules {
		path := fmt.Sprintf("proxy.forward.rules[%d]", i)
		if r.Action != "allow" && r.Action != "block" {
			add(path+".action", "want allow or block, got %q", r.Action)
		}
		if len(r.Hosts) == 0 {
			add(path+".hosts", "must not be empty (use [\"*\"] for every host)")
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
}
