// Package moderate checks posted text for forum moderation: profanity
// (word lists per language, with leetspeak, repeated letters, separators
// and masks undone; allow-lists for innocent words) and sentiment (VADER,
// github.com/jonreiter/govader), a thread's mood over a window, and the
// actions the reverse proxy takes on a route that fronts a forum.
package moderate

import (
	"bufio"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

//go:embed words/*.txt
var builtinWords embed.FS

// entry is a listed word as the matcher compares it: its letters with
// runs collapsed (the key), the minimum length of each run, and whether
// it also matches words it begins.
type entry struct {
	word   string
	key    string
	runs   []int
	prefix bool
}

// Matcher finds listed words in text.
type Matcher struct {
	words map[string][]entry // key -> entries
	pre   []entry            // prefix entries
	allow map[string]bool
	all   []entry
}

// Languages are the built-in lists.
func Languages() []string {
	ents, _ := fs.ReadDir(builtinWords, "words")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".txt"))
	}
	return out
}

// NewMatcher loads the built-in lists of langs (all when empty) and the
// files in extra (the same syntax).
func NewMatcher(langs []string, extra []string) (*Matcher, error) {
	m := &Matcher{words: map[string][]entry{}, allow: map[string]bool{}}
	if len(langs) == 0 {
		langs = Languages()
	}
	for _, l := range langs {
		b, err := builtinWords.ReadFile(path.Join("words", l+".txt"))
		if err != nil {
			return nil, fmt.Errorf("languages: no built-in word list %q (have %s)", l, strings.Join(Languages(), ", "))
		}
		if err := m.add(l+".txt", string(b)); err != nil {
			return nil, err
		}
	}
	for _, f := range extra {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("word_lists: %w", err)
		}
		if err := m.add(f, string(b)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Matcher) add(name, text string) error {
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		w := strings.TrimSpace(sc.Text())
		if w == "" || w[0] == '#' {
			continue
		}
		w = fold(w)
		if strings.HasPrefix(w, "!") {
			m.allow[strings.TrimPrefix(w, "!")] = true
			continue
		}
		e := entry{word: w}
		if strings.HasSuffix(w, "*") {
			e.prefix, e.word = true, strings.TrimSuffix(w, "*")
		}
		if e.word == "" || strings.IndexFunc(e.word, func(r rune) bool { return !unicode.IsLetter(r) }) >= 0 {
			return fmt.Errorf("%s:%d: %q: a word is letters only (optionally ending in *)", name, n, w)
		}
		e.key, e.runs = runLength(e.word)
		if e.prefix {
			m.pre = append(m.pre, e)
		} else {
			m.words[e.key] = append(m.words[e.key], e)
		}
		m.all = append(m.all, e)
	}
	sort.Slice(m.pre, func(i, j int) bool { return len(m.pre[i].key) > len(m.pre[j].key) })
	return sc.Err()
}

// fold is the form words are compared in: NFKC, lower case, ß kept.
func fold(s string) string { return strings.ToLower(norm.NFKC.String(s)) }

// runLength collapses runs of a letter: "fuuck" -> "fuck", [1 2 1 1].
func runLength(s string) (string, []int) {
	var b strings.Builder
	var runs []int
	var last rune = -1
	for _, r := range s {
		if r == last {
			runs[len(runs)-1]++
			continue
		}
		b.WriteRune(r)
		runs = append(runs, 1)
		last = r
	}
	return b.String(), runs
}

// leet maps the characters people put for letters.
var leet = map[rune]rune{'4': 'a', '@': 'a', '3': 'e', '1': 'i', '!': 'i', '|': 'i', '0': 'o', '5': 's', '$': 's', '7': 't', '+': 't', '8': 'b', '9': 'g', '€': 'e'}

// Hit is a listed word found in text: where (byte offsets of the
// original text) and which word.
type Hit struct {
	Word  string `json:"word"`
	Start int    `json:"-"`
	End   int    `json:"-"`
}

// token is a run of word characters (letters, digits, leet symbols and
// mask characters) in the text.
type token struct {
	text       string
	start, end int
}

func isWordChar(r rune) bool {
	if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) {
		return true
	}
	switch r {
	case '@', '$', '!', '|', '+', '*', '#', '€':
		return true
	}
	return false
}

func tokens(s string) []token {
	var out []token
	start := -1
	for i, r := range s {
		if isWordChar(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, token{s[start:i], start, i})
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, token{s[start:], start, len(s)})
	}
	return out
}

// Find returns the listed words in text. Obfuscations undone: leetspeak
// (sh1t, @ss, a$$), repeated letters (fuuuck), letters spelled apart
// (f.u.c.k, f u c k), masks (f*ck, f**k, sh#t), look-alike letters
// (NFKC: full-width and styled letters), and accents (fück is not fuck:
// accents are kept, as German needs them).
func (m *Matcher) Find(text string) []Hit {
	toks := tokens(text)
	var hits []Hit
	for i := 0; i < len(toks); i++ {
		// Letters spelled apart: three or more one-letter tokens in a
		// row, each separated by one character, are one word.
		j := i
		for j+1 < len(toks) && utf8.RuneCountInString(toks[j].text) == 1 && utf8.RuneCountInString(toks[j+1].text) == 1 && toks[j+1].start-toks[j].end <= 1 {
			j++
		}
		if j-i >= 2 {
			var b strings.Builder
			for k := i; k <= j; k++ {
				b.WriteString(toks[k].text)
			}
			if w, ok := m.match(b.String()); ok {
				hits = append(hits, Hit{Word: w, Start: toks[i].start, End: toks[j].end})
				i = j
				continue
			}
		}
		if w, ok := m.match(toks[i].text); ok {
			hits = append(hits, Hit{Word: w, Start: toks[i].start, End: toks[i].end})
		}
	}
	return hits
}

// match checks one token (and its leet readings) against the lists.
func (m *Matcher) match(tok string) (string, bool) {
	t := fold(tok)
	if m.allow[t] {
		return "", false
	}
	for _, cand := range readings(t) {
		if m.allow[cand] {
			return "", false
		}
		if strings.ContainsAny(cand, "*#") {
			if w, ok := m.masked(cand); ok {
				return w, true
			}
			continue
		}
		key, runs := runLength(cand)
		for _, e := range m.words[key] {
			if runsCover(runs, e.runs) {
				return e.word, true
			}
		}
		for _, e := range m.pre {
			if strings.HasPrefix(key, e.key) && runsCover(runs[:len([]rune(e.key))], e.runs) {
				return e.word, true
			}
		}
	}
	return "", false
}

// readings are the token with leet characters read as letters (a 1 as
// i, and again as l); a token without them is itself.
func readings(t string) []string {
	if !strings.ContainsFunc(t, func(r rune) bool { _, ok := leet[r]; return ok }) {
		return []string{t}
	}
	if strings.IndexFunc(t, unicode.IsLetter) < 0 {
		return nil // a number, or only symbols: not a word
	}
	var a, b strings.Builder
	for _, r := range t {
		if l, ok := leet[r]; ok {
			a.WriteRune(l)
			if r == '1' || r == '|' {
				l = 'l'
			}
			b.WriteRune(l)
			continue
		}
		a.WriteRune(r)
		b.WriteRune(r)
	}
	if a.String() == b.String() {
		return []string{a.String()}
	}
	return []string{a.String(), b.String()}
}

// runsCover: each run of the token is at least as long as the word's.
func runsCover(tok, word []int) bool {
	if len(tok) < len(word) {
		return false
	}
	for i := range word {
		if tok[i] < word[i] {
			return false
		}
	}
	return true
}

// masked matches a token with * or # standing for letters (f*ck, f**k)
// against the listed words of the same length with the same visible
// letters; at least two letters must be visible.
func (m *Matcher) masked(t string) (string, bool) {
	rs := []rune(t)
	visible := 0
	for _, r := range rs {
		if r != '*' && r != '#' {
			visible++
		}
	}
	if visible < 2 || rs[0] == '*' || rs[0] == '#' {
		return "", false
	}
next:
	for _, e := range m.all {
		w := []rune(e.word)
		if len(w) != len(rs) && !(e.prefix && len(rs) > len(w)) {
			continue
		}
		for i := range min(len(w), len(rs)) {
			if rs[i] != '*' && rs[i] != '#' && rs[i] != w[i] {
				continue next
			}
		}
		return e.word, true
	}
	return "", false
}

// Mask replaces each hit's characters but the first with *.
func Mask(text string, hits []Hit) string {
	if len(hits) == 0 {
		return text
	}
	var b strings.Builder
	last := 0
	for _, h := range hits {
		b.WriteString(text[last:h.Start])
		first := true
		for _, r := range text[h.Start:h.End] {
			if first {
				b.WriteRune(r)
				first = false
				continue
			}
			if isWordChar(r) {
				b.WriteByte('*')
			} else {
				b.WriteRune(r)
			}
		}
		last = h.End
	}
	b.WriteString(text[last:])
	return b.String()
}
