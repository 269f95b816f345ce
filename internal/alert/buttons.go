package alert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/notify/telegram"
	"github.com/prometheus/alertmanager/template"
	tele "gopkg.in/telebot.v3"
)

// Inline buttons on alert messages. Telegram sends a button press to
// the bot that sent the message, so a Telegram receiver whose chat is
// one of alert.telegram.chats and whose token is the bot's has its
// firing notifications sent by Ops's bot, with two buttons: "Silence 1h"
// and "Ack" (a 1h silence recorded as acknowledged by the chat's user).
// Any other Telegram receiver, and every notification while the bot is
// not running, goes through Alertmanager's own notifier, without
// buttons. The text is Alertmanager's, from the same template.

// maxMessageRunes is Telegram's limit on a message's text.
const maxMessageRunes = 4096

// buttoned is a Telegram receiver that sends through the bot when it can.
type buttoned struct {
	am   notify.Notifier
	conf *telegram.TelegramConfig
	tmpl *template.Template
	log  *slog.Logger
	bot  func() *chat
}

func (b buttoned) Notify(ctx context.Context, as ...*amalert.Alert) notify.NotifyVerdict {
	c := b.bot()
	if c == nil || !c.sends(b.conf) {
		return b.am.Notify(ctx, as...)
	}
	data := notify.GetTemplateData(ctx, b.tmpl, as, b.log)
	var err error
	var text string
	if b.conf.ParseMode == "HTML" {
		text = notify.TmplHTML(b.tmpl, data, &err)(b.conf.Message)
		if utf8.RuneCountInString(text) > maxMessageRunes {
			return b.am.Notify(ctx, as...) // it says the message is too long, as Alertmanager does
		}
	} else {
		text, _ = notify.TruncateInRunes(notify.TmplText(b.tmpl, data, &err)(b.conf.Message), maxMessageRunes)
	}
	if err != nil {
		return notify.Unrecoverable(err, notify.DefaultReason)
	}
	opts := &tele.SendOptions{DisableNotification: b.conf.DisableNotifications, DisableWebPagePreview: true,
		ThreadID: b.conf.MessageThreadID, ParseMode: b.conf.ParseMode}
	if data.Status == "firing" {
		key := c.buttons.remember(pressable{matchers: groupMatchers(data), text: text, parseMode: b.conf.ParseMode})
		opts.ReplyMarkup = &tele.ReplyMarkup{InlineKeyboard: [][]tele.InlineButton{{
			{Text: "Silence 1h", Data: "sil:" + key}, {Text: "Ack", Data: "ack:" + key}}}}
	}
	if _, err := c.bot.Send(tele.ChatID(b.conf.ChatID), text, opts); err != nil {
		return notify.Retry(0, notify.RedactURL(err), notify.DefaultReason)
	}
	return notify.Success()
}

// sends reports whether a receiver's messages can be sent by this bot:
// its chat is one of the bot's, and its token is the bot's.
func (c *chat) sends(conf *telegram.TelegramConfig) bool {
	if _, ok := c.chats[conf.ChatID]; !ok {
		return false
	}
	tok := string(conf.BotToken)
	if conf.BotTokenFile != "" {
		b, err := os.ReadFile(conf.BotTokenFile)
		if err != nil {
			return false
		}
		tok = strings.TrimSpace(string(b))
	}
	return tok == c.token
}

// groupMatchers are the matchers that silence a notification's alerts:
// the labels they share, and their names when those differ.
func groupMatchers(d *template.Data) string {
	var ms []string
	for _, p := range d.CommonLabels.SortedPairs() {
		ms = append(ms, p.Name+"="+strconv.Quote(p.Value))
	}
	if _, ok := d.CommonLabels["alertname"]; !ok {
		names := map[string]bool{}
		for _, a := range d.Alerts {
			names[regexp.QuoteMeta(a.Labels["alertname"])] = true
		}
		var alt []string
		for n := range names {
			alt = append(alt, n)
		}
		sort.Strings(alt)
		ms = append(ms, "alertname=~"+strconv.Quote(strings.Join(alt, "|")))
	}
	return "{" + strings.Join(ms, ",") + "}"
}

// pressable is what a message's buttons act on.
type pressable struct {
	matchers, text, parseMode string
}

// buttonMemory keeps what the buttons of recent messages act on (callback
// data is at most 64 bytes: the buttons carry a key). It is held in
// memory, for the last maxPressable messages: a button of a message sent
// before Ops restarted answers that /silence is the way.
type buttonMemory struct {
	mu    sync.Mutex
	byKey map[string]pressable
	order []string
}

const maxPressable = 1000

func (b *buttonMemory) remember(p pressable) string {
	var k [8]byte
	_, _ = rand.Read(k[:])
	key := hex.EncodeToString(k[:])
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byKey == nil {
		b.byKey = map[string]pressable{}
	}
	b.byKey[key] = p
	b.order = append(b.order, key)
	if len(b.order) > maxPressable {
		delete(b.byKey, b.order[0])
		b.order = b.order[1:]
	}
	return key
}

func (b *buttonMemory) get(key string) (pressable, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.byKey[key]
	return p, ok
}

// onButton handles a press of Silence 1h or Ack: the chat and its role
// are checked as for a command, the silence is made, the press is
// answered, and the message is edited to say who did what (its buttons
// gone). Each press is an audit event like a command.
func (c *chat) onButton(tc tele.Context) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cb := tc.Callback()
	id := tc.Chat().ID
	who, ok := c.chats[id]
	if !ok {
		c.m.log.Warn("telegram: a button press from a chat that is not allowed", "chat", id)
		c.audit(ctx, "alert.chat.refused", map[string]any{"chat": id, "command": "button"})
		return tc.Respond(&tele.CallbackResponse{Text: "This chat is not allowed to command Ops.", ShowAlert: true})
	}
	kind, key, _ := strings.Cut(cb.Data, ":")
	name := map[string]string{"sil": "button:silence", "ack": "button:ack"}[kind]
	if name == "" {
		return tc.Respond(&tele.CallbackResponse{Text: "Unknown button."})
	}
	rec := map[string]any{"chat": id, "user": who.User, "role": who.Role, "command": name, "args": key}
	if c.m.deps.Allows == nil || !c.m.deps.Allows(who.Role, "alert:write") {
		rec["ok"], rec["error"] = false, "needs alert:write"
		c.audit(ctx, "alert.chat.command", rec)
		return tc.Respond(&tele.CallbackResponse{Text: "Not allowed: needs alert:write, and role " + who.Role + " does not have it.", ShowAlert: true})
	}
	p, found := c.buttons.get(key)
	if !found {
		rec["ok"], rec["error"] = false, "unknown message"
		c.audit(ctx, "alert.chat.command", rec)
		return tc.Respond(&tele.CallbackResponse{Text: "This message is from before Ops restarted; use /silence or /ack.", ShowAlert: true})
	}
	comment, done := "silenced from Telegram", "Silenced"
	if kind == "ack" {
		comment, done = "acknowledged by "+who.User, "Acknowledged"
	}
	rec["args"] = p.matchers
	out, err := c.silence(ctx, who, p.matchers+" 1h "+comment)
	rec["ok"] = err == nil
	if err != nil {
		rec["error"] = err.Error()
		c.audit(ctx, "alert.chat.command", rec)
		return tc.Respond(&tele.CallbackResponse{Text: "Failed: " + err.Error(), ShowAlert: true})
	}
	c.audit(ctx, "alert.chat.command", rec)
	line := fmt.Sprintf("%s for 1h by %s. %s", done, who.User, out)
	text := p.text + "\n\n" + escapeFor(p.parseMode, line)
	if _, err := c.bot.Edit(cb.Message, text, &tele.SendOptions{ParseMode: p.parseMode, DisableWebPagePreview: true}); err != nil {
		c.m.log.Warn("telegram: could not edit the alert message", "err", err)
	}
	return tc.Respond(&tele.CallbackResponse{Text: done + " for 1h."})
}

// escapeFor escapes plain text for a parse mode, so the line added to an
// edited message cannot break its markup.
func escapeFor(mode, s string) string {
	var special string
	switch mode {
	case "HTML":
		return html.EscapeString(s)
	case "MarkdownV2":
		special = "_*[]()~`>#+-=|{}.!\\"
	case "Markdown":
		special = "_*`["
	default:
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(special, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
