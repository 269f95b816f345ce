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
	// sent is every sendMessage and editMessageText as its parameters;
	// answers every answerCallbackQuery.
	sent, edits, answers []map[string]any
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
			p["message_id"] = 1000 + n
			f.sent = append(f.sent, p)
			f.mu.Unlock()
			ok(w, map[string]any{"message_id": 1000 + n, "date": time.Now().Unix(), "chat": map[string]any{"id": chat, "type": "private"}, "text": p["text"]})
		case "editMessageText":
			f.mu.Lock()
			f.edits = append(f.edits, p)
			f.mu.Unlock()
			ok(w, map[string]any{"message_id": p["message_id"], "date": time.Now().Unix(), "chat": map[string]any{"id": p["chat_id"], "type": "private"}, "text": p["text"]})
		case "answerCallbackQuery":
			f.mu.Lock()
			f.answers = append(f.answers, p)
			f.mu.Unlock()
			ok(w, true)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"ok":false,"error_code":404,"description":"Not Found: method not found"}`)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// press queues a press of an inline button (its callback data) on a
// message the bot sent to a chat, and returns the answer to it.
func (f *fakeBotAPI) press(t *testing.T, chat int64, msg map[string]any, data string) map[string]any {
	t.Helper()
	f.mu.Lock()
	f.nextID++
	before := len(f.answers)
	from := map[string]any{"id": chat, "is_bot": false, "first_name": "someone"}
	f.queue = append(f.queue, map[string]any{"update_id": f.nextID, "callback_query": map[string]any{
		"id": fmt.Sprint("cb", f.nextID), "from": from, "chat_instance": "1", "data": data,
		"message": map[string]any{"message_id": msg["message_id"], "date": time.Now().Unix(), "text": msg["text"],
			"chat": map[string]any{"id": chat, "type": "private"}}}})
	f.mu.Unlock()
	var answer map[string]any
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.answers) == before {
			return fmt.Errorf("no answer to the press of %q", data)
		}
		answer = f.answers[before]
		return nil
	})
	return answer
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

// TestAlertButtons: a firing alert reaches a chat of the bot with the
// buttons Silence 1h and Ack; a viewer's press is refused, the editor's
// Ack makes a real silence and edits the message to say so; a button of
// a message Ops no longer knows says so; a chat that is not the bot's
// gets Alertmanager's own message, without buttons.
func TestAlertButtons(t *testing.T) {
	const token = "4242:test-token"
	bot := newFakeBotAPI(t, token)
	dir := t.TempDir()
	tokFile, amFile := filepath.Join(dir, "token"), filepath.Join(dir, "alertmanager.yml")
	_ = os.WriteFile(tokFile, []byte(token+"\n"), 0o600)
	_ = os.WriteFile(amFile, fmt.Appendf(nil, `route:
  receiver: chat
  group_by: [alertname]
  group_wait: 0s
receivers:
  - name: chat
    telegram_configs:
      - {bot_token_file: %[1]s, api_url: %[2]s, chat_id: 111}
      - {bot_token_file: %[1]s, api_url: %[2]s, chat_id: 444}
`, tokFile, bot.URL), 0o600)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Alert.AlertmanagerConfig = amFile
		c.Alert.Telegram = config.Telegram{TokenFile: tokFile, APIURL: bot.URL,
			Chats: []config.ChatUser{{ID: 111, User: "alice", Role: "editor"}, {ID: 222, User: "bob", Role: "viewer"}}}
	})
	rule := "groups:\n  - name: web\n    interval: 1s\n    rules:\n      - alert: Loud\n        expr: vector(1) > 0\n        labels: {service: api}\n        annotations: {summary: \"api is down\"}\n"
	if code, body := call(t, "PUT", r.URL+"/api/v1/alerts/rules/web", r.Token, rule); code != 200 {
		t.Fatalf("rules: %d %s", code, body)
	}
	var withButtons, plain map[string]any
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		bot.mu.Lock()
		defer bot.mu.Unlock()
		for _, m := range bot.sent {
			switch fmt.Sprint(m["chat_id"]) {
			case "111":
				withButtons = m
			case "444":
				plain = m
			}
		}
		if withButtons == nil || plain == nil {
			return fmt.Errorf("notifications sent: %v", bot.sent)
		}
		return nil
	})
	for _, m := range []map[string]any{withButtons, plain} {
		if !strings.Contains(fmt.Sprint(m["text"]), "Loud") || m["parse_mode"] != "HTML" {
			t.Fatalf("notification %v: want Alertmanager's default message, in HTML", m)
		}
	}
	if plain["reply_markup"] != nil {
		t.Fatalf("a chat the bot does not serve got buttons: %v", plain)
	}
	var markup struct {
		InlineKeyboard [][]struct {
			Text         string `json:"text"`
			CallbackData string `json:"callback_data"`
		} `json:"inline_keyboard"`
	}
	if err := json.Unmarshal([]byte(fmt.Sprint(withButtons["reply_markup"])), &markup); err != nil || len(markup.InlineKeyboard) != 1 || len(markup.InlineKeyboard[0]) != 2 {
		t.Fatalf("buttons: %v (%v)", withButtons["reply_markup"], err)
	}
	silence, ack := markup.InlineKeyboard[0][0], markup.InlineKeyboard[0][1]
	if silence.Text != "Silence 1h" || ack.Text != "Ack" || len(ack.CallbackData) > 64 {
		t.Fatalf("buttons: %+v", markup)
	}

	if a := bot.press(t, 222, withButtons, ack.CallbackData); !strings.Contains(fmt.Sprint(a["text"]), "needs alert:write") || a["show_alert"] != true {
		t.Fatalf("a viewer's press: %v", a)
	}
	if a := bot.press(t, 111, withButtons, "ack:0123456789abcdef"); !strings.Contains(fmt.Sprint(a["text"]), "before Ops restarted") {
		t.Fatalf("an unknown message's button: %v", a)
	}
	if a := bot.press(t, 111, withButtons, ack.CallbackData); a["text"] != "Acknowledged for 1h." {
		t.Fatalf("ack: %v", a)
	}
	_, body := call(t, "GET", r.URL+"/api/v1/alerts/silences", r.Token, "")
	if !strings.Contains(body, `"created_by":"telegram:alice"`) || !strings.Contains(body, `"comment":"acknowledged by alice"`) ||
		!strings.Contains(body, `alertname=\"Loud\"`) || !strings.Contains(body, `service=\"api\"`) {
		t.Fatalf("the silence made by Ack: %s", body)
	}
	bot.mu.Lock()
	edits := append([]map[string]any(nil), bot.edits...)
	bot.mu.Unlock()
	if len(edits) != 1 || fmt.Sprint(edits[0]["message_id"]) != fmt.Sprint(withButtons["message_id"]) ||
		!strings.Contains(fmt.Sprint(edits[0]["text"]), "Acknowledged for 1h by alice") || !strings.Contains(fmt.Sprint(edits[0]["text"]), "Loud") {
		t.Fatalf("edits: %v", edits)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		_, body := call(t, "GET", r.URL+"/api/v1/events?subject=ev.alert.chat.>", r.Token, "")
		if n := strings.Count(body, `"command":"button:ack"`); n != 3 || !strings.Contains(body, `"error":"needs alert:write"`) {
			return fmt.Errorf("want three audited presses (refused, unknown, done): %s", body)
		}
		return nil
	})
}
