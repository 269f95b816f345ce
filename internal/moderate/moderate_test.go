package moderate

import (
	"strings"
	"testing"
	"time"
)

func matcher(t testing.TB) *Matcher {
	t.Helper()
	m, err := NewMatcher(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestProfanity: listed words are found through the usual disguises,
// innocent words that contain them are not.
func TestProfanity(t *testing.T) {
	m := matcher(t)
	for text, want := range map[string]string{
		"what the fuck":          "fuck",
		"FUCKING hell":           "fuck",
		"fuuuuuck this":          "fuck",
		"f.u.c.k you":            "fuck",
		"f u c k you":            "fuck",
		"f*ck off":               "fuck",
		"f**k off":               "fuck",
		"this is sh1t":           "shit",
		"this is $h!t":           "shit",
		"sh#t happens":           "shit",
		"you @ss":                "ass",
		"a$$hole":                "asshole",
		"ｆｕｃｋ":                   "fuck", // full-width letters
		"you absolute b1tch":     "bitch",
		"du Arschloch":           "arschloch",
		"so eine Scheiße":        "scheiße",
		"what a moron, honestly": "moron",
	} {
		hits := m.Find(text)
		if len(hits) != 1 || hits[0].Word != want {
			t.Errorf("%q: %+v, want %s", text, hits, want)
		}
	}
	for _, text := range []string{
		"Scunthorpe United won", "a classic assessment", "the cockpit of the plane", "shitake mushrooms",
		"Charles Dickens", "assassin's creed", "I passed the class", "call me at 555 1234", "a cocktail bar",
		"grass is green", "Hancock Street", "a *really* good idea", "#hashtag", "pass the salt", "Massachusetts",
	} {
		if hits := m.Find(text); len(hits) != 0 {
			t.Errorf("%q: flagged %+v", text, hits)
		}
	}
}

func TestMask(t *testing.T) {
	m := matcher(t)
	for in, want := range map[string]string{
		"what the fuck, man": "what the f***, man",
		"f.u.c.k you":        "f.*.*.* you",
		"sh1t and a$$hole":   "s*** and a******",
		"nothing here":       "nothing here",
	} {
		if got := Mask(in, m.Find(in)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestSentimentOrdering: VADER ranks sample sentences as a reader would.
func TestSentimentOrdering(t *testing.T) {
	ordered := []string{
		"This is wonderful, thank you so much, I love it!",
		"Thanks, that helps.",
		"The meeting is at three.",
		"I don't like this change.",
		"This is terrible, you are an idiot and I hate everything you write!!!",
	}
	last := 2.0
	for _, s := range ordered {
		c := Score(s).Compound
		if c >= last {
			t.Errorf("%q scored %.3f, not below the sentence before (%.3f)", s, c, last)
		}
		last = c
	}
	if c := Score("The meeting is at three.").Compound; c != 0 {
		t.Errorf("a neutral sentence scored %.3f", c)
	}
}

func TestFields(t *testing.T) {
	got, err := Fields("application/json; charset=utf-8", []byte(`{"thread":42,"comment":{"text":"hello"},"posts":[{"body":"a"}],"n":{"x":1}}`),
		[]string{"comment.text", "thread", "posts.0.body", "missing"})
	if err != nil || got["comment.text"] != "hello" || got["thread"] != "42" || got["posts.0.body"] != "a" || len(got) != 3 {
		t.Fatalf("json: %v %v", got, err)
	}
	if _, err := Fields("application/json", []byte(`{"n":{"x":1}}`), []string{"n"}); err == nil || !strings.Contains(err.Error(), "n: want a string") {
		t.Fatalf("json object field: %v", err)
	}
	got, err = Fields("application/x-www-form-urlencoded", []byte("body=hi+there&thread_id=7"), []string{"body", "thread_id"})
	if err != nil || got["body"] != "hi there" || got["thread_id"] != "7" {
		t.Fatalf("form: %v %v", got, err)
	}
	if _, err := Fields("application/octet-stream", []byte{0, 1}, []string{"body"}); err != ErrNotText {
		t.Fatalf("binary: %v", err)
	}
	if _, err := Fields("multipart/form-data", nil, []string{"body"}); err == nil || !strings.Contains(err.Error(), "boundary") {
		t.Fatalf("multipart without a boundary: %v", err)
	}
	mp := "--XB\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nhello there\r\n" +
		"--XB\r\nContent-Disposition: form-data; name=\"body\"; filename=\"a.txt\"\r\n\r\nfile content\r\n--XB--\r\n"
	got, err = Fields("multipart/form-data; boundary=XB", []byte(mp), []string{"body"})
	if err != nil || got["body"] != "hello there" {
		t.Fatalf("multipart: %v %v", got, err)
	}
	b, err := SetFields("application/json", []byte(`{"comment":{"text":"fuck"},"k":1}`), map[string]string{"comment.text": "f***"})
	if err != nil || string(b) != `{"comment":{"text":"f***"},"k":1}` {
		t.Fatalf("set json: %s %v", b, err)
	}
}

// TestHeat: a thread turns heated with enough negative posts in the
// window, once, and cools down when the window moves on.
func TestHeat(t *testing.T) {
	h := &heat{window: 10 * time.Minute, posts: 3, below: -0.3, threads: map[string]*thread{}}
	t0 := time.Unix(1_800_000_000, 0)
	if _, _, turned := h.add("t1", -0.8, t0); turned {
		t.Fatal("one post heated the thread")
	}
	h.add("t1", -0.6, t0.Add(time.Minute))
	avg, n, turned := h.add("t1", -0.5, t0.Add(2*time.Minute))
	if !turned || n != 3 || avg > -0.6 || avg < -0.64 {
		t.Fatalf("third negative post: avg %.2f n %d turned %v", avg, n, turned)
	}
	if _, _, turned := h.add("t1", -0.7, t0.Add(3*time.Minute)); turned {
		t.Fatal("heated twice")
	}
	h.add("t2", 0.9, t0)
	if _, _, turned := h.add("t2", -0.9, t0.Add(time.Minute)); turned {
		t.Fatal("another thread heated")
	}
	// Twenty minutes on, the old posts are out of the window.
	if _, n, _ := h.add("t1", 0.5, t0.Add(25*time.Minute)); n != 1 {
		t.Fatalf("window: %d posts", n)
	}
}
