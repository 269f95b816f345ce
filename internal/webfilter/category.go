// Package webfilter classifies web requests and pages into categories,
// redwood's model: a directory of categories, each a folder with a
// category.conf (description, action, weight, default score) and rule
// files of domains, URL prefixes, URL regexes and content phrases, each
// with a score. A request's URL (and a search engine query in it) and
// the text of an HTML page add to each category's score; the page is the
// top-scoring category at or over the threshold. What happens then is
// the forward proxy's policy (package forward).
package webfilter

import (
	"bufio"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// Starter is the small category set shipped with Ops (used when
// proxy.forward.filter.categories is empty): rules written for Ops, not
// copied from any list.
//
//go:embed starter
var starter embed.FS

// StarterFS is the starter set as a file system rooted at its categories.
func StarterFS() fs.FS {
	sub, _ := fs.Sub(starter, "starter")
	return sub
}

// Category is one category's settings from its category.conf.
type Category struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Action      string   `json:"action"` // block, allow, warn, log or ignore
	Weight      float64  `json:"weight"`
	Score       int      `json:"default_score"` // score of a rule written without one
	ListURLs    []string `json:"list_urls,omitempty"`
	Rules       int      `json:"rules"`
}

// Actions a category or a policy rule may take.
var Actions = []string{"allow", "block", "warn", "log", "ignore"}

func validAction(a string) bool {
	for _, x := range Actions {
		if a == x {
			return true
		}
	}
	return false
}

type hostRule struct {
	cat    int
	score  int
	prefix string // path prefix ("" the whole host), lower case
}

type regexRule struct {
	cat   int
	score int
	re    *regexp.Regexp
}

type phrase struct {
	cat   int
	score int
	cap   int
	text  string // normalised: lower-case words joined by one space
}

// Set is a loaded category directory. It is immutable: reloads build a
// new Set.
type Set struct {
	Categories []Category
	hosts      map[string][]hostRule
	regexes    []regexRule
	phrases    []phrase
	first      map[string][]int32 // first word -> indexes in phrases
	starts     []bool             // pairOf(first word) -> any phrase starts so (a cheap test before the map)
}

// Load reads every category folder in fsys: a folder with a
// category.conf, and rule files (every other regular file in it, so a
// UT1-style folder's `domains` and `urls` files load as they are). extra
// are more rule files by category name (lists fetched from URLs).
func Load(fsys fs.FS, extra map[string][]byte) (*Set, error) {
	s := &Set{hosts: map[string][]hostRule{}, first: map[string][]int32{}}
	dirs, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, d := range dirs {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		conf, err := fs.ReadFile(fsys, path.Join(d.Name(), "category.conf"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := parseConf(d.Name(), string(conf))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		idx := len(s.Categories)
		s.Categories = append(s.Categories, c)
		files, _ := fs.ReadDir(fsys, d.Name())
		for _, f := range files {
			if f.IsDir() || f.Name() == "category.conf" || strings.HasPrefix(f.Name(), ".") {
				continue
			}
			name := path.Join(d.Name(), f.Name())
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := s.addRules(idx, name, b); err != nil {
				errs = append(errs, err)
			}
		}
		if b, ok := extra[c.Name]; ok {
			if err := s.addRules(idx, c.Name+" (list_url)", b); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.SliceStable(s.phrases, func(i, j int) bool { return len(s.phrases[i].text) > len(s.phrases[j].text) })
	s.starts = make([]bool, 1<<16)
	for i, p := range s.phrases {
		w, _, _ := strings.Cut(p.text, " ")
		s.first[w] = append(s.first[w], int32(i))
		s.starts[pairOf([]byte(w))] = true
	}
	return s, nil
}

// parseConf reads a category.conf: `key = value` (or `key: value`)
// lines; # starts a comment.
func parseConf(name, text string) (Category, error) {
	c := Category{Name: name, Action: "block", Weight: 1, Score: 100}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if i := strings.IndexByte(line, ':'); !ok || i >= 0 && i < len(k) {
			k, v, ok = strings.Cut(line, ":")
		}
		if !ok {
			return c, fmt.Errorf("%s/category.conf:%d: want key = value", name, n+1)
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		switch k {
		case "description":
			c.Description = v
		case "action":
			if !validAction(v) {
				return c, fmt.Errorf("%s/category.conf:%d: action: want one of %s, got %q", name, n+1, strings.Join(Actions, ", "), v)
			}
			c.Action = v
		case "weight":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 100 {
				return c, fmt.Errorf("%s/category.conf:%d: weight: want a number from 0 to 100, got %q", name, n+1, v)
			}
			c.Weight = f
		case "score", "default_score":
			i, err := strconv.Atoi(v)
			if err != nil || i < -100000 || i > 100000 {
				return c, fmt.Errorf("%s/category.conf:%d: score: want an integer, got %q", name, n+1, v)
			}
			c.Score = i
		case "list_url":
			if !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
				return c, fmt.Errorf("%s/category.conf:%d: list_url: want an http(s) URL, got %q", name, n+1, v)
			}
			c.ListURLs = append(c.ListURLs, v)
		default:
			return c, fmt.Errorf("%s/category.conf:%d: unknown key %q (description, action, weight, score, list_url)", name, n+1, k)
		}
	}
	return c, nil
}

// addRules parses one rule file: a rule per line, optionally followed by
// its score (and, for phrases, its cap):
//
//	example.com            a domain and its subdomains
//	example.com/path       a URL prefix
//	/regexp/               a regular expression on host/path?query
//	<some phrase> 10 50    a content phrase: 10 per occurrence, at most 50
//
// `default N` sets the score of the following lines written without one.
func (s *Set) addRules(cat int, file string, b []byte) error {
	def := s.Categories[cat].Score
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" || line[0] == '#' {
			continue
		}
		where := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: "+format, append([]any{file, n}, a...)...)
		}
		var rule, rest string
		switch line[0] {
		case '<':
			i := strings.IndexByte(line, '>')
			if i < 0 {
				return where("phrase: no closing >")
			}
			rule, rest = line[:i+1], line[i+1:]
		case '/':
			i := strings.LastIndexByte(line, '/')
			if i == 0 {
				return where("regexp: no closing /")
			}
			rule, rest = line[:i+1], line[i+1:]
		default:
			rule, rest, _ = strings.Cut(line, " ")
		}
		nums := strings.Fields(rest)
		if rule == "default" {
			if len(nums) != 1 {
				return where("default: want one score")
			}
			v, err := strconv.Atoi(nums[0])
			if err != nil {
				return where("default: %q is not an integer", nums[0])
			}
			def = v
			continue
		}
		score, limit := def, 0
		if len(nums) > 2 {
			return where("want a rule, a score and (for phrases) a cap, got %d fields after the rule", len(nums))
		}
		if len(nums) > 0 {
			v, err := strconv.Atoi(nums[0])
			if err != nil || v < -100000 || v > 100000 {
				return where("score: %q is not an integer", nums[0])
			}
			score = v
		}
		if len(nums) > 1 {
			v, err := strconv.Atoi(nums[1])
			if err != nil || v < 0 {
				return where("cap: %q is not a positive integer", nums[1])
			}
			limit = v
		}
		switch rule[0] {
		case '<':
			t := Normalize(rule[1 : len(rule)-1])
			if t == "" {
				return where("phrase: empty")
			}
			if limit == 0 {
				limit = 5 * abs(score)
			}
			s.phrases = append(s.phrases, phrase{cat: cat, score: score, cap: limit, text: t})
		case '/':
			re, err := regexp.Compile(rule[1 : len(rule)-1])
			if err != nil {
				return where("regexp: %v", err)
			}
			s.regexes = append(s.regexes, regexRule{cat: cat, score: score, re: re})
		default:
			host, pfx, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(rule, "http://"), "https://"), "/")
			h, err := CanonHost(host)
			if err != nil {
				return where("%v", err)
			}
			if pfx != "" {
				pfx = "/" + strings.ToLower(pfx)
			}
			s.hosts[h] = append(s.hosts[h], hostRule{cat: cat, score: score, prefix: pfx})
		}
		s.Categories[cat].Rules++
	}
	return sc.Err()
}

// CanonHost is a host as rules and lookups compare it: lower case, IDNA
// A-labels, no trailing dot.
func CanonHost(h string) (string, error) {
	h = strings.TrimSuffix(strings.TrimSpace(h), ".")
	if h == "" {
		return "", errors.New("host: empty")
	}
	a, err := idna.Lookup.ToASCII(h)
	if err != nil {
		// Lists carry names with underscores and the like; keep them,
		// lower-cased, when they are at least printable ASCII.
		for _, r := range h {
			if r <= ' ' || r >= 0x7f {
				return "", fmt.Errorf("host %q: %v", h, err)
			}
		}
		a = h
	}
	return strings.ToLower(a), nil
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}
