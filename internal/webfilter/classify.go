package webfilter

import (
	"math"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Scores tallies one request's or page's points per category of a Set:
// URL rules add at once, phrases count occurrences and are capped when
// the result is read.
type Scores struct {
	set    *Set
	url    []int
	counts map[int32]int // phrase index -> occurrences
}

// NewScores is an empty tally for s.
func (s *Set) NewScores() *Scores {
	return &Scores{set: s, url: make([]int, len(s.Categories))}
}

// URL adds the scores of u's host, path and query (domain and prefix
// rules, regexps on host/path?query) and of a search engine's query
// words in it (phrases).
func (sc *Scores) URL(u *url.URL) {
	s := sc.set
	host, err := CanonHost(u.Hostname())
	if err != nil {
		return
	}
	p := strings.ToLower(u.EscapedPath())
	// Each category counts its best-matching (longest) host rule once.
	best := map[int]hostRule{}
	for h := host; h != ""; {
		for _, r := range s.hosts[h] {
			if r.prefix != "" && !strings.HasPrefix(p, r.prefix) {
				continue
			}
			if b, ok := best[r.cat]; !ok || len(r.prefix) > len(b.prefix) {
				best[r.cat] = r
			}
		}
		i := strings.IndexByte(h, '.')
		if i < 0 {
			break
		}
		h = h[i+1:]
	}
	for c, r := range best {
		sc.url[c] += r.score
	}
	if len(s.regexes) > 0 {
		full := host + p
		if u.RawQuery != "" {
			full += "?" + u.RawQuery
		}
		for _, r := range s.regexes {
			if r.re.MatchString(full) {
				sc.url[r.cat] += r.score
			}
		}
	}
	if q := SearchQuery(host, u); q != "" {
		sc.Text([]byte(q))
	}
}

// Text counts the phrases in text (plain text). It may be called more
// than once for one page.
func (sc *Scores) Text(text []byte) {
	if len(sc.set.phrases) == 0 {
		return
	}
	sc.Normalized(normalizeBytes(text))
}

// Normalized is Text for text already in Normalize's form (a Page's).
func (sc *Scores) Normalized(norm []byte) {
	s := sc.set
	if len(s.phrases) == 0 {
		return
	}
	if sc.counts == nil {
		sc.counts = map[int32]int{}
	}
	for i := 0; i < len(norm); {
		j := i
		for j < len(norm) && norm[j] != ' ' {
			j++
		}
		if !s.starts[pairOf(norm[i:j])] {
			i = j + 1
			continue
		}
		for _, pi := range s.first[string(norm[i:j])] {
			ph := s.phrases[pi].text
			if len(norm)-i >= len(ph) && string(norm[i:i+len(ph)]) == ph && (i+len(ph) == len(norm) || norm[i+len(ph)] == ' ') {
				sc.counts[pi]++
			}
		}
		i = j + 1
	}
}

// Score is one category's total.
type Score struct {
	Category string `json:"category"`
	Score    int    `json:"score"`
}

// Totals are the categories with a non-zero score, highest first, each
// weighted, phrases capped; ignored categories are left out.
func (sc *Scores) Totals() []Score {
	s := sc.set
	pts := make([]float64, len(s.Categories))
	for c, v := range sc.url {
		pts[c] = float64(v)
	}
	for pi, n := range sc.counts {
		p := s.phrases[pi]
		v := p.score * n
		if abs(v) > p.cap {
			v = p.cap
			if p.score < 0 {
				v = -p.cap
			}
		}
		pts[p.cat] += float64(v)
	}
	var out []Score
	for c, v := range pts {
		if v == 0 || s.Categories[c].Action == "ignore" {
			continue
		}
		out = append(out, Score{Category: s.Categories[c].Name, Score: int(math.Round(v * s.Categories[c].Weight))})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].Category < out[j].Category
	})
	return out
}

// Top is the top-scoring category at or over threshold, or "" if none.
func (sc *Scores) Top(threshold int) (Score, bool) {
	t := sc.Totals()
	if len(t) == 0 || t[0].Score < threshold {
		return Score{}, false
	}
	return t[0], true
}

// Category is the settings of the named category.
func (s *Set) Category(name string) (Category, bool) {
	for _, c := range s.Categories {
		if c.Name == name {
			return c, true
		}
	}
	return Category{}, false
}

// Normalize is text as phrases are matched: lower case, every run of
// characters that are not letters or digits one space, trimmed.
func Normalize(s string) string { return string(normalizeBytes([]byte(s))) }

// asciiFold maps an ASCII byte to its lower-case letter or digit, or 0
// for a separator.
var asciiFold = func() (t [utf8.RuneSelf]byte) {
	for c := byte('a'); c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = c, c
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c
	}
	return t
}()

func normalizeBytes(b []byte) []byte {
	space := true
	out := appendNorm(make([]byte, 0, len(b)+8), b, &space)
	if len(out) > 0 && out[len(out)-1] == ' ' {
		out = out[:len(out)-1]
	}
	return out
}

// appendNorm appends b to out as Normalize writes it; *space says the
// last byte written was a separator (or nothing was), and carries over
// between calls.
func appendNorm(out, b []byte, space *bool) []byte {
	sp := *space
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			i++
			if f := asciiFold[c]; f != 0 {
				out = append(out, f)
				sp = false
			} else if !sp {
				out = append(out, ' ')
				sp = true
			}
			continue
		}
		r, w := utf8.DecodeRune(b[i:])
		i += w
		if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) {
			out = utf8.AppendRune(out, unicode.ToLower(r))
			sp = false
		} else if !sp {
			out = append(out, ' ')
			sp = true
		}
	}
	*space = sp
	return out
}

// pairOf is a word's first two bytes as an index (one-byte words: the
// byte and 0), for the table of the first words of phrases.
func pairOf(w []byte) int {
	if len(w) == 1 {
		return int(w[0]) << 8
	}
	return int(w[0])<<8 | int(w[1])
}

// SearchQuery is the words searched for when u is a search engine's
// results page (Google, Bing, DuckDuckGo, Yahoo, YouTube), or "".
func SearchQuery(host string, u *url.URL) string {
	q := u.Query()
	switch {
	case isGoogle(host) && (u.Path == "/search" || u.Path == "/webhp" || u.Path == "/images"):
		return q.Get("q")
	case host == "bing.com" || strings.HasSuffix(host, ".bing.com"):
		return q.Get("q")
	case host == "duckduckgo.com" || strings.HasSuffix(host, ".duckduckgo.com"):
		return q.Get("q")
	case strings.HasSuffix(host, "search.yahoo.com"):
		return q.Get("p")
	case isYouTube(host) && u.Path == "/results":
		return q.Get("search_query")
	}
	return ""
}

var googleTLD = regexp.MustCompile(`^(com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})$`)

// isGoogle: google.com, www.google.co.uk and the like.
func isGoogle(host string) bool {
	h := strings.TrimPrefix(host, "www.")
	return strings.HasPrefix(h, "google.") && googleTLD.MatchString(h[len("google."):])
}

func isYouTube(host string) bool {
	return host == "youtube.com" || strings.HasSuffix(host, ".youtube.com")
}
