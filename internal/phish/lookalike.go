// Package phish judges whether a URL or a domain is phishing: listed in a
// feed (OpenPhish, URLhaus, PhishTank, plain domain lists), or a
// lookalike of a protected brand's domain (confusable characters by
// Unicode's UTS #39 skeletons, mixed scripts, punycode, typos, the wrong
// TLD, the brand in a subdomain or beside other words), or a page on an
// unprotected domain that shows a protected brand with a password form.
// A verdict is a score with its reasons; the forward proxy and the
// resolver act on it (block, warn, log) and `ops phish check` explains
// it.
package phish

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/mtibben/confusables"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
	"golang.org/x/text/unicode/norm"
)

// Scores of each kind of evidence (a verdict adds them up).
const (
	ScoreFeed        = 100 // the URL or domain is in a feed
	ScoreFeedHost    = 60  // the host has URLs in a URL feed
	ScoreConfusable  = 80  // looks the same as a brand's name (UTS #39 skeleton)
	ScoreTypo        = 60  // one edit from a brand's name
	ScoreWrongTLD    = 50  // a brand's name under another suffix
	ScoreSubdomain   = 70  // a brand's domain or name in the subdomain part
	ScoreCombo       = 40  // a brand's name with other words (paypal-secure)
	ScoreMixedScript = 30  // a label mixes scripts (Latin and Cyrillic)
	ScorePunycode    = 10  // an internationalised label beside a lookalike
	ScoreNew         = 20  // first seen within new_domain_days
	ScorePage        = 80  // a page shows a brand's name and a password form
	ScoreFormAway    = 20  // and its form posts to another site
)

// Reason is one piece of evidence.
type Reason struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	Score  int    `json:"score"`
}

// brand is a protected brand: its name (the registrable label, e.g.
// paypal) and its domains.
type brand struct {
	name    string   // as written in the first domain's label
	label   string   // lower case
	skel    string   // skeleton of label
	domains []string // registrable domains, A-labels
}

// Skeleton is s as UTS #39 compares for confusability, folded further
// for domain names: lower case before and after (so 0 and o, which the
// table maps to O, meet), and combining marks dropped (ṗ is p).
func Skeleton(s string) string {
	k := strings.ToLower(confusables.Skeleton(strings.ToLower(s)))
	var b strings.Builder
	for _, r := range norm.NFD.String(k) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// split is a host's registrable domain's label and suffix, and the
// labels before them: login.paypa1-secure.co.uk -> "paypa1-secure",
// "co.uk", ["login"].
func split(host string) (label, suffix string, sub []string, err error) {
	etld1, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return "", "", nil, err
	}
	label, suffix, _ = strings.Cut(etld1, ".")
	if rest := strings.TrimSuffix(host, etld1); rest != "" {
		sub = strings.Split(strings.TrimSuffix(rest, "."), ".")
	}
	return label, suffix, sub, nil
}

// lookalike checks host (A-labels, lower case) against the brands.
func (c *Checker) lookalike(host string) []Reason {
	label, suffix, sub, err := split(host)
	if err != nil {
		return nil
	}
	ulabel, _ := idna.ToUnicode(label)
	var out []Reason
	for _, b := range c.brands {
		var rs []Reason
		lsk := Skeleton(ulabel)
		switch {
		case ulabel == b.label:
			rs = append(rs, Reason{"wrong_tld", fmt.Sprintf("%s is %s's name under .%s, not %s", host, b.name, suffix, strings.Join(b.domains, ", ")), ScoreWrongTLD})
		case lsk == b.skel:
			rs = append(rs, Reason{"confusable", fmt.Sprintf("%q looks like %q (UTS #39 skeleton %q)", ulabel, b.label, b.skel), ScoreConfusable})
		case len(b.label) >= 4 && editDistance(ulabel, b.label) == 1:
			rs = append(rs, Reason{"typo", fmt.Sprintf("%q is one letter from %q (missing, doubled, swapped or changed)", ulabel, b.label), ScoreTypo})
		default:
			// The brand beside other words: paypal-secure, securepaypal.
			for _, part := range strings.FieldsFunc(ulabel, func(r rune) bool { return r == '-' || r == '_' }) {
				if part != ulabel && (part == b.label || Skeleton(part) == b.skel) {
					rs = append(rs, Reason{"combo", fmt.Sprintf("%q has %s's name in it", ulabel, b.name), ScoreCombo})
					if part != b.label {
						rs = append(rs, Reason{"confusable", fmt.Sprintf("%q looks like %q", part, b.label), ScoreConfusable})
					}
					break
				}
			}
			if len(rs) == 0 && len(b.label) >= 5 && !strings.Contains(ulabel, "-") && strings.Contains(lsk, b.skel) {
				rs = append(rs, Reason{"combo", fmt.Sprintf("%q has %s's name in it", ulabel, b.name), ScoreCombo})
			}
		}
		// The brand's domain or name in the subdomain part:
		// paypal.com.evil.net, paypal.login.example.
		for _, l := range sub {
			ul, _ := idna.ToUnicode(l)
			if ul == b.label || Skeleton(ul) == b.skel {
				rs = append(rs, Reason{"subdomain", fmt.Sprintf("%s's name is in the subdomain part of %s, whose owner is %s.%s", b.name, host, label, suffix), ScoreSubdomain})
				break
			}
		}
		if len(rs) == 0 {
			continue
		}
		if scripts := scriptsOf(ulabel); len(scripts) > 1 {
			rs = append(rs, Reason{"mixed_script", fmt.Sprintf("%q mixes %s", ulabel, strings.Join(scripts, " and ")), ScoreMixedScript})
		}
		if strings.HasPrefix(label, "xn--") {
			rs = append(rs, Reason{"punycode", fmt.Sprintf("%s is %q in Unicode", label, ulabel), ScorePunycode})
		}
		out = append(out, rs...)
	}
	return out
}

// protected reports whether host is one of the brands' domains or under
// one.
func (c *Checker) protected(host string) bool {
	for _, b := range c.brands {
		for _, d := range b.domains {
			if host == d || strings.HasSuffix(host, "."+d) {
				return true
			}
		}
	}
	return false
}

// scriptsOf names the scripts of the letters in s (Common and Inherited
// left out).
func scriptsOf(s string) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range s {
		if !unicode.IsLetter(r) {
			continue
		}
		for _, st := range scriptTables {
			if unicode.Is(st.tab, r) && !seen[st.name] {
				seen[st.name] = true
				out = append(out, st.name)
			}
		}
	}
	return out
}

var scriptTables = []struct {
	name string
	tab  *unicode.RangeTable
}{
	{"Latin", unicode.Latin}, {"Cyrillic", unicode.Cyrillic}, {"Greek", unicode.Greek}, {"Armenian", unicode.Armenian},
	{"Han", unicode.Han}, {"Arabic", unicode.Arabic}, {"Hebrew", unicode.Hebrew}, {"Cherokee", unicode.Cherokee},
	{"Hiragana", unicode.Hiragana}, {"Katakana", unicode.Katakana}, {"Hangul", unicode.Hangul}, {"Thai", unicode.Thai},
	{"Devanagari", unicode.Devanagari}, {"Georgian", unicode.Georgian},
}

// editDistance is the optimal string alignment distance (Damerau-
// Levenshtein with adjacent swaps) between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if d := len(ra) - len(rb); d > 2 || d < -2 {
		return 3
	}
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
