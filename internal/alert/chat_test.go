package alert_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// fakeBotAPI answers as Telegram's Bot API does (getMe, getUpdates with
// offsets and long polling, sendMessage), feeds the updates the test
// queues and records what the bot sends.
type fakeBotAPI struct {
	*httptest.Server
	mu      sync.Mutex
	queue   []map[string]any
	nextID  int
	replies map[int64][]string
}

func newFakeBotAPI(t *testing.T, token string) *fakeBotAPI {
	f := &fakeBotAPI{replies: map[int64][]string{}}
	ok := func(w http.ResponseWriter, result any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "result": result})
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, found := strings.CutPrefix(r.URL.Path, "/bot"+token+"/")
		if !found {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"ok":false,"error_code":401,"description":"Unauthorized"}`)
			return
		}
		var p map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &p)
		switch method {
		case "getMe":
			ok(w, map[string]any{"id": 4242, "is_bot": true, "first_name": "Ops", "username": "ops_bot"})
		case "getUpdates":
			offset := 0
			fmt.Sscan(fmt.Sprint(p["offset"]), &offset)
			deadline := time.Now().Add(300 * time.Millisecond)
			for {
				f.mu.Lock()
				var out []map[string]any
				for _, u := range f.queue {
					if int(u["update_id"].(int)) >= offset {
						out = append(out, u)
					}
				}
				f.mu.Unlock()
				if len(out) > 0 || time.Now().After(deadline) {
					ok(w, append([]map[string]any{}, out...))
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		case "sendMessage":
			var chat int64
			fmt.Sscan(fmt.Sprint(p["chat_id"]), &chat)
			f.mu.Lock()
			f.replies[chat] = append(f.replies[chat], fmt.Sprint(p["text"]))
			n := len(f.replies[chat])
			f.mu.Unlock()
			ok(w, map[string]any{"message_id": 1000 + n, "date": time.Now().Unix(), "chat": map[string]any{"id": chat, "type": "private"}, "text": p["text"]})
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"ok":false,"error_code":404,"description":"Not Found: method not found"}`)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// say queues a message from a chat and returns the bot's reply to it.
func (f *fakeBotAPI) say(t *testing.T, chat int64, text string) string {
	t.Helper()
	f.mu.Lock()
	f.nextID++
	before := len(f.replies[chat])
	f.queue = append(f.queue, map[string]any{"update_id": f.nextID, "message": map[string]any{
		"message_id": f.nextID, "date": time.Now().Unix(), "text": text,
		"chat": map[string]any{"id": chat, "type": "private"}, "from": map[string]any{"id": chat, "is_bot": false, "first_name": "someone"}}})
	f.mu.Unlock()
	var reply string
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.replies[chat]) == before {
			return fmt.Errorf("no reply to %q", text)
		}
		reply = f.replies[chat][before]
		return nil
	})
	return reply
}

// TestChatCommands: the bot answers only allowed chats, each with its
// role's permissions; a silence made in chat is a real silence; unknown
// commands get the help; every command is an audit event.
func TestChatCommands(t *testing.T) {
	const token = "4242:test-token"
	bot := newFakeBotAPI(t, token)
	dir := t.TempDir()
	tokFile, amFile := filepath.Join(dir, "token"), filepath.Join(dir, "alertmanager.yml")
	_ = os.WriteFile(tokFile, []byte(token+"\n"), 0o600)
	_ = os.WriteFile(amFile, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o600)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Alert.AlertmanagerConfig = amFile
		c.Alert.Telegram = config.Telegram{TokenFile: tokFile, APIURL: bot.URL,
			Chats: []config.ChatUser{{ID: 111, User: "alice", Role: "editor"}, {ID: 222, User: "bob", Role: "viewer"}, {ID: 333, User: "carol", Role: "admin"}}}
	})
	one := "groups:\n  - name: web\n    interval: 1s\n    rules:\n      - alert: Loud\n        expr: vector(1) > 0\n        annotations: {summary: \"api is down\"}\n"
	if code, body := call(t, "PUT", r.URL+"/api/v1/alerts/rules/web", r.Token, one); code != 200 {
		t.Fatalf("rules: %d %s", code, body)
	}

	if got := bot.say(t, 999, "/alerts"); !strings.Contains(got, "not allowed") || !strings.Contains(got, "999") {
		t.Fatalf("unknown chat: %q", got)
	}
	if got := bot.say(t, 222, `/silence alertname="Loud" 1h`); !strings.Contains(got, "Not allowed") || !strings.Contains(got, "alert:write") {
		t.Fatalf("viewer silencing: %q", got)
	}
	if got := bot.say(t, 111, "/frobnicate"); !strings.Contains(got, "Unknown command /frobnicate") || !strings.Contains(got, "/silence <matchers>") {
		t.Fatalf("unknown command: %q", got)
	}
	if got := bot.say(t, 111, `/silence alertname="Loud"`); !strings.Contains(got, "Failed: want /silence <matchers> <duration>") {
		t.Fatalf("silence without a duration: %q", got)
	}
	got := bot.say(t, 111, `/silence@ops_bot alertname="Loud" 2h deploying 1.4`)
	if !strings.HasPrefix(got, `Silenced {alertname="Loud"} until `) {
		t.Fatalf("silence: %q", got)
	}
	_, body := call(t, "GET", r.URL+"/api/v1/alerts/silences", r.Token, "")
	if !strings.Contains(body, `"created_by":"telegram:alice"`) || !strings.Contains(body, `"comment":"deploying 1.4"`) {
		t.Fatalf("the silence made in chat: %s", body)
	}
	testutil.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		if got := bot.say(t, 222, "/alerts"); !strings.Contains(got, "firing Loud") || !strings.Contains(got, "api is down") {
			return fmt.Errorf("%q", got)
		}
		return nil
	})
	if got := bot.say(t, 111, "/ack Loud 30m"); !strings.HasPrefix(got, `Acknowledged Loud. Silenced {alertname="Loud"} until `) {
		t.Fatalf("ack: %q", got)
	}
	if got := bot.say(t, 111, "/ack NoSuchAlert"); !strings.Contains(got, "NoSuchAlert is not firing") {
		t.Fatalf("ack of nothing: %q", got)
	}
	if got := bot.say(t, 222, "/silences"); !strings.Contains(got, `{alertname="Loud"}`) || !strings.Contains(got, "telegram:alice") {
		t.Fatalf("silences: %q", got)
	}
	if got := bot.say(t, 222, "/status"); !strings.Contains(got, "alert: running") || !strings.Contains(got, "up ") {
		t.Fatalf("status: %q", got)
	}
	if got := bot.say(t, 222, "/drift"); got != "No host drifts." {
		t.Fatalf("drift before any deployment: %q", got)
	}
	if code, body := call(t, "POST", r.URL+"/api/v1/deployments", r.Token, `{"service":"api","env":"prod","version":"1.4.2","hosts":["web-1"]}`); code != 201 {
		t.Fatalf("deployment: %d %s", code, body)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if got := bot.say(t, 222, "/deploys api"); !strings.HasPrefix(got, "api/prod: 1.4.2 since ") || !strings.Contains(got, "1 of 1 hosts drift") {
			return fmt.Errorf("%q", got)
		}
		return nil
	})
	if got := bot.say(t, 222, "/drift"); !strings.Contains(got, "api/prod web-1: missing") {
		t.Fatalf("drift: %q", got)
	}

	// Policy and log levels: the admin's chat only.
	if got := bot.say(t, 111, "/block ip 203.0.113.7 1h"); !strings.Contains(got, "needs policy:write") {
		t.Fatalf("editor blocking: %q", got)
	}
	// Addresses are kept as the proxy sees them, anonymised to their /24.
	if got := bot.say(t, 333, "/block ip 203.0.113.7 1h scanning /wp-admin"); !strings.HasPrefix(got, "Blocked ip 203.0.113.0 until ") {
		t.Fatalf("block: %q", got)
	}
	_, body = call(t, "GET", r.URL+"/api/v1/policy", r.Token, "")
	if !strings.Contains(body, `"subject":"203.0.113.0"`) || !strings.Contains(body, `"by":"telegram:carol"`) || !strings.Contains(body, `"reason":"scanning /wp-admin"`) {
		t.Fatalf("the block made in chat: %s", body)
	}
	if got := bot.say(t, 333, "/block ip not-an-address"); !strings.HasPrefix(got, "Failed: ") {
		t.Fatalf("bad address: %q", got)
	}
	if got := bot.say(t, 333, "/unblock ip 203.0.113.7"); got != "Unblocked ip 203.0.113.0." {
		t.Fatalf("unblock: %q", got)
	}
	if _, body = call(t, "GET", r.URL+"/api/v1/policy", r.Token, ""); strings.Contains(body, "203.0.113.0") {
		t.Fatalf("still blocked: %s", body)
	}
	level := func() string {
		_, body := call(t, "GET", r.URL+"/api/v1/log-level", r.Token, "")
		var res struct {
			Levels []struct{ Module, Level string }
		}
		_ = json.Unmarshal([]byte(body), &res)
		for _, m := range res.Levels {
			if m.Module == "alert" {
				return m.Level
			}
		}
		return body
	}
	before := level()
	if got := bot.say(t, 333, "/loglevel alert warn 1s"); got != "alert logs at warn for 1s, then back to "+before+"." {
		t.Fatalf("loglevel: %q", got)
	}
	if l := level(); l != "warn" {
		t.Fatalf("alert's level after /loglevel: %s", l)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if l := level(); l != before {
			return fmt.Errorf("level %s, want %s again", l, before)
		}
		return nil
	})
	if got := bot.say(t, 333, "/loglevel nosuch debug"); !strings.Contains(got, "unknown module") {
		t.Fatalf("unknown module: %q", got)
	}

	var evs struct {
		Events []struct {
			Event struct {
				Type string
				Data map[string]any
			}
		}
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		_, body := call(t, "GET", r.URL+"/api/v1/events?subject="+"ev.alert.chat.>", r.Token, "")
		if err := json.Unmarshal([]byte(body), &evs); err != nil {
			return err
		}
		if len(evs.Events) < 7 {
			return fmt.Errorf("%d audit events: %s", len(evs.Events), body)
		}
		return nil
	})
	refused, denied, done := 0, 0, 0
	for _, e := range evs.Events {
		switch {
		case e.Event.Type == "alert.chat.refused":
			refused++
		case e.Event.Data["ok"] == false && e.Event.Data["error"] == "needs alert:write":
			denied++
		case e.Event.Data["command"] == "/silence" && e.Event.Data["ok"] == true && e.Event.Data["user"] == "alice":
			done++
		}
	}
	if refused != 1 || denied != 1 || done != 1 {
		t.Fatalf("audit: refused %d, denied %d, silences %d in %+v", refused, denied, done, evs.Events)
	}
}
