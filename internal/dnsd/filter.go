package dnsd

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
)

// Block lists. A list file may mix the formats people publish:
//
//	0.0.0.0 ads.example.com          hosts file: that name only, as /etc/hosts
//	ads.example.com                  one domain a line: it and its subdomains
//	*.ads.example.com                only its subdomains
//	||ads.example.com^               AdGuard/ABP: it and its subdomains
//	@@||good.example.com^            an exception: never blocked
//	||ads.example.com^$important     wins over exceptions
//	/^ad[0-9]+\./                     a regular expression (RE2) on the name
//	! comment, # comment, [Adblock Plus 2.0]
//
// Lines the syntax does not cover (cosmetic rules, paths, other modifiers) are skipped and counted, never half-applied. Names are
// matched in canonical form: lower case, without the trailing dot.

// ruleKind is what a matching rule does.
type ruleKind uint8

const (
	ruleBlock ruleKind = iota + 1
	ruleAllow
	ruleImportant // a block that wins over exceptions
)

// rule is one parsed rule and where it came from.
type rule struct {
	kind ruleKind
	// subOnly: *.example.com matches subdomains, not the name itself;
	// exactOnly: a hosts file's line matches the name, not subdomains.
	subOnly, exactOnly bool
	source             string // "file:line", for events
}

// filter holds every rule by the domain it names, and the regex rules.
type filter struct {
	rules   map[string][]rule
	regexes []regexRule
	skipped int
	n       int
}

// regexRule is /regex/ (or @@/regex/), matched against the whole name.
type regexRule struct {
	re     *regexp.Regexp
	allow  bool
	source string
}

func newFilter() *filter { return &filter{rules: map[string][]rule{}} }

// addList parses a list; source names it in matches ("ads.txt").
func (f *filter) addList(r io.Reader, source string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		f.addLine(sc.Text(), fmt.Sprintf("%s:%d", source, line))
	}
	return sc.Err()
}

// addLine parses one line of a list.
func (f *filter) addLine(s, source string) {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '!' || s[0] == '#' || s[0] == '[' {
		return
	}
	if i := strings.Index(s, " #"); i >= 0 { // hosts files' trailing comments
		s = strings.TrimSpace(s[:i])
	}
	kind := ruleBlock
	if strings.HasPrefix(s, "@@") {
		kind, s = ruleAllow, s[2:]
	}
	if len(s) > 2 && s[0] == '/' && s[len(s)-1] == '/' {
		re, err := regexp.Compile(s[1 : len(s)-1])
		if err != nil || len(s) > 1024 {
			f.skipped++
			return
		}
		f.regexes = append(f.regexes, regexRule{re: re, allow: kind == ruleAllow, source: source})
		f.n++
		return
	}
	if strings.HasPrefix(s, "||") {
		body, mods, _ := strings.Cut(s[2:], "$")
		name, ok := strings.CutSuffix(body, "^")
		if !ok && strings.ContainsAny(body, "/^*|") {
			f.skipped++
			return
		}
		for _, m := range strings.Split(mods, ",") {
			switch m {
			case "":
			case "important":
				if kind == ruleBlock {
					kind = ruleImportant
				}
			default:
				f.skipped++ // $client, $dnstype, ...: not applied rather than applied wrongly
				return
			}
		}
		f.add(name, rule{kind: kind, source: source})
		return
	}
	if kind == ruleAllow {
		f.add(s, rule{kind: ruleAllow, source: source})
		return
	}
	fields := strings.Fields(s)
	if len(fields) >= 2 {
		if _, err := netip.ParseAddr(fields[0]); err == nil { // hosts file
			for _, name := range fields[1:] {
				if localNames[name] {
					continue
				}
				f.add(name, rule{kind: ruleBlock, exactOnly: true, source: source})
			}
			return
		}
	}
	if len(fields) != 1 {
		f.skipped++
		return
	}
	if sub, ok := strings.CutPrefix(s, "*."); ok {
		f.add(sub, rule{kind: ruleBlock, subOnly: true, source: source})
		return
	}
	f.add(s, rule{kind: ruleBlock, source: source})
}

func (f *filter) add(name string, r rule) {
	name = canonName(name)
	if !hostName(name) {
		f.skipped++
		return
	}
	f.rules[name] = append(f.rules[name], r)
	f.n++
}

// match decides a name: blocked or not, and the rule that decided. The
// name and each parent domain are looked up (a.b.example.com, then
// b.example.com, example.com, com); an $important block wins, then an
// exception, then a block.
func (f *filter) match(name string) (blocked bool, by string) {
	if f == nil || len(f.rules) == 0 && len(f.regexes) == 0 {
		return false, ""
	}
	var block, allow string
	exact := true
	for d := name; d != ""; {
		for _, r := range f.rules[d] {
			if r.subOnly && exact || r.exactOnly && !exact {
				continue
			}
			switch r.kind {
			case ruleImportant:
				return true, r.source
			case ruleAllow:
				if allow == "" {
					allow = r.source
				}
			case ruleBlock:
				if block == "" {
					block = r.source
				}
			}
		}
		exact = false
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	for _, r := range f.regexes {
		if (allow == "" || block == "") && r.re.MatchString(name) {
			if r.allow && allow == "" {
				allow = r.source
			} else if !r.allow && block == "" {
				block = r.source
			}
		}
	}
	if allow != "" {
		return false, ""
	}
	return block != "", block
}

// localNames are the names hosts files map to themselves, not blocks.
var localNames = map[string]bool{"localhost": true, "localhost.localdomain": true, "local": true, "broadcasthost": true,
	"ip6-localhost": true, "ip6-loopback": true, "ip6-localnet": true, "ip6-mcastprefix": true,
	"ip6-allnodes": true, "ip6-allrouters": true, "ip6-allhosts": true}

// hostName: dot-separated labels of letters, digits, hyphens and
// underscores, 1 to 63 bytes each, at most 253 in all, and not an IP
// address (hosts files hold "0.0.0.0 0.0.0.0").
func hostName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// allows reports whether an exception (@@ or an allow entry) covers name.
func (f *filter) allows(name string) bool {
	if f == nil {
		return false
	}
	for d := name; d != ""; {
		for _, r := range f.rules[d] {
			if r.kind == ruleAllow {
				return true
			}
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	for _, r := range f.regexes {
		if r.allow && r.re.MatchString(name) {
			return true
		}
	}
	return false
}

// canonName is a name as rules and the cache see it: lower case, no
// trailing dot.
func canonName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}
