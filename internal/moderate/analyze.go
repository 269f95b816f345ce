package moderate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jonreiter/govader"
)

// Sentiment is VADER's scores of a text: compound from -1 (most
// negative) to 1, and the shares of positive, neutral and negative.
type Sentiment struct {
	Compound float64 `json:"compound"`
	Positive float64 `json:"pos"`
	Neutral  float64 `json:"neu"`
	Negative float64 `json:"neg"`
}

// Result is what moderation found in a text.
type Result struct {
	Profane   bool      `json:"profane"`
	Words     []string  `json:"words"`
	Masked    string    `json:"masked,omitempty"`
	Sentiment Sentiment `json:"sentiment"`
	// Toxic is true when the text is profane or its compound score is
	// under the threshold it was checked with.
	Toxic bool `json:"toxic"`
}

var (
	vaderOnce sync.Once
	vader     *govader.SentimentIntensityAnalyzer
	vaderMu   sync.Mutex // the analyzer keeps state per call
)

// Score is VADER's sentiment of text.
func Score(text string) Sentiment {
	vaderOnce.Do(func() { vader = govader.NewSentimentIntensityAnalyzer() })
	vaderMu.Lock()
	s := vader.PolarityScores(text)
	vaderMu.Unlock()
	return Sentiment{Compound: round3(s.Compound), Positive: round3(s.Positive), Neutral: round3(s.Neutral), Negative: round3(s.Negative)}
}

func round3(f float64) float64 { return float64(int64(f*1000+copysign(0.5, f))) / 1000 }

func copysign(a, b float64) float64 {
	if b < 0 {
		return -a
	}
	return a
}

// Analyze checks text: the listed words (and the text with them masked)
// and its sentiment; toxicBelow is the compound score under which it is
// toxic.
func (m *Matcher) Analyze(text string, toxicBelow float64) Result {
	hits := m.Find(text)
	r := Result{Words: []string{}, Sentiment: Score(text)}
	seen := map[string]bool{}
	for _, h := range hits {
		if !seen[h.Word] {
			seen[h.Word] = true
			r.Words = append(r.Words, h.Word)
		}
	}
	if len(hits) > 0 {
		r.Profane = true
		r.Masked = Mask(text, hits)
	}
	r.Toxic = r.Profane || r.Sentiment.Compound < toxicBelow
	return r
}

// Fields pulls the named fields out of a posted body: form fields by
// name (application/x-www-form-urlencoded), JSON values by dotted path
// (comment.text; arrays by index, posts.0.body). Missing fields are left
// out; a field that is not a string is an error naming it.
func Fields(contentType string, body []byte, names []string) (map[string]string, error) {
	out := map[string]string{}
	ct := strings.ToLower(contentType)
	switch {
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("body: not a form: %w", err)
		}
		for _, n := range names {
			if vals, ok := v[n]; ok {
				out[n] = strings.Join(vals, "\n")
			}
		}
	case strings.HasPrefix(ct, "application/json") || strings.HasSuffix(strings.SplitN(ct, ";", 2)[0], "+json"):
		var doc any
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, fmt.Errorf("body: not JSON: %w", err)
		}
		for _, n := range names {
			v, ok := lookup(doc, n)
			if !ok {
				continue
			}
			switch x := v.(type) {
			case string:
				out[n] = x
			case float64, bool:
				out[n] = fmt.Sprint(x)
			default:
				return nil, fmt.Errorf("%s: want a string, got %T", n, v)
			}
		}
	case strings.HasPrefix(ct, "multipart/form-data"):
		_, params, err := mime.ParseMediaType(contentType)
		if err != nil || params["boundary"] == "" {
			return nil, errors.New("body: multipart without a boundary")
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		want := map[string]bool{}
		for _, n := range names {
			want[n] = true
		}
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("body: multipart: %w", err)
			}
			if name := part.FormName(); want[name] && part.FileName() == "" {
				b, err := io.ReadAll(part)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				if out[name] != "" {
					out[name] += "\n"
				}
				out[name] += string(b)
			}
		}
	default:
		return nil, ErrNotText
	}
	return out, nil
}

// ErrNotText is a body moderation cannot read (not a form, not JSON).
var ErrNotText = errors.New("body: moderation reads forms (urlencoded or multipart) and JSON")

func lookup(doc any, p string) (any, bool) {
	cur := doc
	for _, part := range strings.Split(p, ".") {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[part]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			var i int
			if _, err := fmt.Sscanf(part, "%d", &i); err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// SetFields writes masked values back into a body of the same type
// (forms and JSON; a multipart body cannot be masked: ErrNotText).
func SetFields(contentType string, body []byte, vals map[string]string) ([]byte, error) {
	ct := strings.ToLower(contentType)
	if strings.HasPrefix(ct, "multipart/") {
		return nil, ErrNotText
	}
	if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		for k, s := range vals {
			v.Set(k, s)
		}
		return []byte(v.Encode()), nil
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	for k, s := range vals {
		parts := strings.Split(k, ".")
		parent, ok := lookup(doc, strings.Join(parts[:len(parts)-1], "."))
		if len(parts) == 1 {
			parent, ok = doc, true
		}
		if m, isMap := parent.(map[string]any); ok && isMap {
			m[parts[len(parts)-1]] = s
		}
	}
	return json.Marshal(doc)
}

// heat follows the mood of threads: each post's compound score, kept for
// the window; a thread with at least posts posts in it whose average is
// under below is heated (once, until it cools down).
type heat struct {
	window time.Duration
	posts  int
	below  float64

	mu      sync.Mutex
	threads map[string]*thread
}

type thread struct {
	at     []time.Time
	scores []float64
	heated bool
}

// add records a post and reports the thread's average and count when it
// has just turned heated.
func (h *heat) add(id string, score float64, now time.Time) (avg float64, n int, turned bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.threads) > 100_000 {
		for k, t := range h.threads { // drop threads with nothing in the window
			if len(t.at) == 0 || now.Sub(t.at[len(t.at)-1]) > h.window {
				delete(h.threads, k)
			}
		}
	}
	t := h.threads[id]
	if t == nil {
		t = &thread{}
		h.threads[id] = t
	}
	t.at, t.scores = append(t.at, now), append(t.scores, score)
	i := 0
	for i < len(t.at) && now.Sub(t.at[i]) > h.window {
		i++
	}
	t.at, t.scores = t.at[i:], t.scores[i:]
	sum := 0.0
	for _, s := range t.scores {
		sum += s
	}
	n = len(t.scores)
	avg = sum / float64(n)
	hot := n >= h.posts && avg < h.below
	turned = hot && !t.heated
	t.heated = hot
	return avg, n, turned
}
