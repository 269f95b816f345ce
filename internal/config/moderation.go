package config

import (
	"fmt"
	"time"
)

// Moderation is forum moderation (docs/moderation.md): the checks behind
// POST /api/v1/moderate and the routes with moderate set.
type Moderation struct {
	Enabled    bool          `yaml:"enabled" doc:"serve POST /api/v1/moderate (a route with moderate set turns the module on by itself)"`
	Languages  Strings       `yaml:"languages" doc:"built-in profanity lists to use (en, de); empty: all"`
	WordLists  Strings       `yaml:"word_lists" doc:"more word list files, one word a line, word* for words it begins, !word never flagged"`
	ToxicBelow float64       `yaml:"toxic_below" doc:"a post whose VADER compound score is under this counts as toxic (-1 to 1)"`
	Heated     HeatedThreads `yaml:"heated"`
}

// HeatedThreads says when a thread is heated: at least posts posts within
// window whose average compound score is under below.
type HeatedThreads struct {
	Window Duration `yaml:"window" doc:"how far back a thread's posts count"`
	Posts  int      `yaml:"posts" doc:"how many posts in the window it takes"`
	Below  float64  `yaml:"below" doc:"the average compound score under which the thread is heated (an ev.forum.heated event, ops_forum_heated_threads_total)"`
}

// Moderate is a route's moderation of posted text.
type Moderate struct {
	Fields  Strings  `yaml:"fields" doc:"form fields or JSON paths (comment.text) whose text is checked; empty: moderation off for the route"`
	Thread  string   `yaml:"thread" doc:"the field or JSON path naming the thread; empty: the request path"`
	Author  string   `yaml:"author" doc:"the field or JSON path naming the author; empty: the signed-in user (auth: required), else none"`
	Action  string   `yaml:"action" doc:"what a profane or toxic post gets: log (forwarded), hold (403 saying it waits for review), hold_header (forwarded with X-Ops-Moderation: hold), mask (forwarded with the words masked), reject (422)"`
	MaxBody ByteSize `yaml:"max_body" doc:"largest post read for moderation; a larger one is refused (413), so it cannot slip past unread"`
}

func defaultModeration() Moderation {
	return Moderation{ToxicBelow: -0.6, Heated: HeatedThreads{Window: Duration(10 * time.Minute), Posts: 5, Below: -0.4}}
}

func (c *Config) validateModeration(add func(path, format string, a ...any)) {
	m := c.Moderation
	if m.ToxicBelow < -1 || m.ToxicBelow > 1 {
		add("moderation.toxic_below", "want -1 to 1, got %v", m.ToxicBelow)
	}
	if m.Heated.Below < -1 || m.Heated.Below > 1 {
		add("moderation.heated.below", "want -1 to 1, got %v", m.Heated.Below)
	}
	if m.Heated.Posts < 1 {
		add("moderation.heated.posts", "want at least 1, got %d", m.Heated.Posts)
	}
	if m.Heated.Window < Duration(time.Minute) {
		add("moderation.heated.window", "want at least 1m, got %s", m.Heated.Window)
	}
	for i, r := range c.Proxy.Routes {
		md := r.Moderate
		if len(md.Fields) == 0 {
			continue
		}
		path := fmt.Sprintf("proxy.routes[%d].moderate", i)
		switch md.Action {
		case "log", "hold", "hold_header", "mask", "reject":
		default:
			add(path+".action", "want log, hold, hold_header, mask or reject, got %q", md.Action)
		}
		if md.MaxBody < 1 || md.MaxBody > 16<<20 {
			add(path+".max_body", "want 1 byte to 16MiB, got %d", md.MaxBody)
		}
	}
}

// ModerationEnabled reports whether the moderation module runs.
func (c *Config) ModerationEnabled() bool {
	if c.Moderation.Enabled {
		return true
	}
	for _, r := range c.Proxy.Routes {
		if len(r.Moderate.Fields) > 0 {
			return true
		}
	}
	return false
}
