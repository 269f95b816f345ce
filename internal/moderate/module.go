package moderate

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/evqueue"
	"github.com/opsgraph/ops/internal/reply"
)

// Deps are what the module needs from the app.
type Deps struct {
	Bus      *bus.Bus
	Logger   *slog.Logger
	Registry prometheus.Registerer
	DataDir  string
	// Handle mounts POST /api/v1/moderate; may be nil.
	Handle func(pattern, perm string, h http.Handler)
	// Actor names who made an API request.
	Actor func(*http.Request) string
}

// Module checks posts and records them as ev.forum.post events, and a
// thread that turns heated as ev.forum.heated.
type Module struct {
	cfg    config.Moderation
	deps   Deps
	log    *slog.Logger
	match  *Matcher
	heat   *heat
	events *evqueue.Queue
	posts  *prometheus.CounterVec
	heated *prometheus.CounterVec
}

// New builds the matcher and mounts the API.
func New(cfg config.Moderation, deps Deps) (*Module, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	mt, err := NewMatcher(cfg.Languages, cfg.WordLists)
	if err != nil {
		return nil, fmt.Errorf("moderation: %w", err)
	}
	m := &Module{cfg: cfg, deps: deps, log: deps.Logger, match: mt,
		heat: &heat{window: cfg.Heated.Window.D(), posts: cfg.Heated.Posts, below: cfg.Heated.Below, threads: map[string]*thread{}}}
	m.posts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_forum_posts_total",
		Help: "Posts moderation checked, by route (api for the API) and action taken."}, []string{"route", "action"})
	m.heated = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_forum_heated_threads_total",
		Help: "Threads that turned heated (moderation.heated), by route; alert on increase()."}, []string{"route"})
	if deps.Registry != nil {
		deps.Registry.MustRegister(m.posts, m.heated)
	}
	if deps.Bus != nil {
		if m.events, err = evqueue.Open(evqueue.Options{Bus: deps.Bus, Log: m.log.With("part", "events"), Dir: filepath.Join(deps.DataDir, "forum-spool"),
			Queue: 10_000, Batch: 200, Flush: 200 * time.Millisecond, SpoolMax: 64 << 20, Name: "forum", What: "forum post events", Registry: deps.Registry}); err != nil {
			return nil, fmt.Errorf("moderation spool: %w", err)
		}
	}
	if deps.Handle != nil {
		deps.Handle("POST /api/v1/moderate", "moderate:write", http.HandlerFunc(m.serveAPI))
	}
	_ = Score("warm up") // VADER's lexicon loads once, at start, not on the first post
	return m, nil
}

// Run sends events until ctx ends.
func (m *Module) Run(ctx context.Context, ready func()) error {
	ready()
	if m.events == nil {
		<-ctx.Done()
		return nil
	}
	m.events.Run(ctx)
	return nil
}

// Post is one post to check.
type Post struct {
	Route  string            // "api" for the API
	Thread string            // thread id
	Author string            // author
	Client string            // anonymised client address
	Fields map[string]string // field -> text
	Action string            // what a flagged post gets (config.Moderate.Action)
}

// Decision is what moderation decided for a post.
type Decision struct {
	Action string            `json:"action"` // allow (nothing found), or the route's action
	Result Result            `json:"result"` // over all fields
	Fields map[string]Result `json:"fields"`
	Masked map[string]string `json:"-"` // field -> masked text, when any word was found
}

// postEvent is the data of ev.forum.post.
type postEvent struct {
	Route     string    `json:"route"`
	Thread    string    `json:"thread,omitempty"`
	Author    string    `json:"author,omitempty"`
	Client    string    `json:"client,omitempty"`
	Fields    []string  `json:"fields"`
	Profane   bool      `json:"profane"`
	Words     []string  `json:"words"`
	Sentiment Sentiment `json:"sentiment"`
	Toxic     bool      `json:"toxic"`
	Action    string    `json:"action"`
	Text      string    `json:"text,omitempty"` // the post, up to 4 KiB, for whoever reviews a held post
}

// Check moderates a post: each field's words and sentiment, the post's
// (all fields together) sentiment, the action, an ev.forum.post event,
// and the thread's mood.
func (m *Module) Check(p Post) Decision {
	d := Decision{Fields: map[string]Result{}, Masked: map[string]string{}}
	names := make([]string, 0, len(p.Fields))
	for k := range p.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	var all strings.Builder
	words := map[string]bool{}
	for _, k := range names {
		r := m.match.Analyze(p.Fields[k], m.cfg.ToxicBelow)
		d.Fields[k] = r
		if r.Profane {
			d.Masked[k] = r.Masked
		}
		for _, w := range r.Words {
			words[w] = true
		}
		if all.Len() > 0 {
			all.WriteString("\n")
		}
		all.WriteString(p.Fields[k])
	}
	d.Result = Result{Words: []string{}, Sentiment: Score(all.String())}
	for w := range words {
		d.Result.Words = append(d.Result.Words, w)
	}
	sort.Strings(d.Result.Words)
	d.Result.Profane = len(words) > 0
	d.Result.Toxic = d.Result.Profane || d.Result.Sentiment.Compound < m.cfg.ToxicBelow
	d.Action = "allow"
	if d.Result.Toxic {
		d.Action = p.Action
	}
	m.posts.WithLabelValues(p.Route, d.Action).Inc()
	text := all.String()
	if len(text) > 4096 {
		text = text[:4096]
	}
	m.emit("forum.post", postEvent{Route: p.Route, Thread: p.Thread, Author: p.Author, Client: p.Client, Fields: names, Profane: d.Result.Profane,
		Words: d.Result.Words, Sentiment: d.Result.Sentiment, Toxic: d.Result.Toxic, Action: d.Action, Text: text})
	if p.Thread != "" {
		if avg, n, turned := m.heat.add(p.Route+"\x00"+p.Thread, d.Result.Sentiment.Compound, time.Now()); turned {
			m.heated.WithLabelValues(p.Route).Inc()
			m.emit("forum.heated", map[string]any{"route": p.Route, "thread": p.Thread, "posts": n, "average": round3(avg),
				"window": m.cfg.Heated.Window.String(), "below": m.cfg.Heated.Below})
			m.log.Warn("thread turned heated", "route", p.Route, "thread", p.Thread, "posts", n, "average", avg)
		}
	}
	return d
}

func (m *Module) emit(typ string, data any) {
	if m.events == nil {
		return
	}
	b, _ := json.Marshal(data)
	m.events.Add(event.NewJSON("ops/moderation", typ, b))
}

// apiRequest is POST /api/v1/moderate's body: a text or named fields,
// and optionally the thread and author (a post with a thread counts
// towards its mood).
type apiRequest struct {
	Text   string            `json:"text"`
	Fields map[string]string `json:"fields"`
	Thread string            `json:"thread"`
	Author string            `json:"author"`
}

func (m *Module) serveAPI(w http.ResponseWriter, r *http.Request) {
	var req apiRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 256<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", "want JSON {\"text\"} or {\"fields\": {...}}, with optional \"thread\" and \"author\": "+err.Error())
		return
	}
	if req.Fields == nil {
		req.Fields = map[string]string{}
	}
	if req.Text != "" {
		if _, ok := req.Fields["text"]; ok {
			reply.Error(w, http.StatusBadRequest, "text", "give text or fields.text, not both")
			return
		}
		req.Fields["text"] = req.Text
	}
	if len(req.Fields) == 0 {
		reply.Error(w, http.StatusBadRequest, "text", "nothing to check: want \"text\" or \"fields\"")
		return
	}
	if len(req.Thread) > 256 || len(req.Author) > 256 {
		reply.Error(w, http.StatusBadRequest, "thread", "thread and author: at most 256 bytes")
		return
	}
	author := req.Author
	if author == "" && m.deps.Actor != nil {
		author = m.deps.Actor(r)
	}
	d := m.Check(Post{Route: "api", Thread: req.Thread, Author: author, Fields: req.Fields, Action: "flag"})
	out := map[string]any{"action": d.Action, "profane": d.Result.Profane, "words": d.Result.Words, "sentiment": d.Result.Sentiment,
		"toxic": d.Result.Toxic, "fields": d.Fields}
	if req.Text != "" {
		out["masked"] = d.Fields["text"].Masked
		if out["masked"] == "" {
			out["masked"] = req.Text
		}
	}
	reply.JSON(w, http.StatusOK, out)
}
