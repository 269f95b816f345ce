package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/silence"
	tele "gopkg.in/telebot.v3"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/deploy"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/policy"
)

// chat is the Telegram bot that takes commands from allowed chats. Each
// chat acts as an Ops user with a role; a command needs its permission,
// and every command, allowed or not, is an audit event
// ev.alert.chat.command (ev.alert.chat.refused for chats not allowed).
type chat struct {
	m     *Module
	bot   *tele.Bot
	chats map[int64]config.ChatUser
	cmds  map[string]chatCommand // made once, when the bot starts
	token string
	// buttons is what the inline buttons of recent alert messages act on.
	buttons buttonMemory
}

// chatCommand is one command: the permission it needs and what it does.
type chatCommand struct {
	perm, usage string
	run         func(ctx context.Context, who config.ChatUser, args string) (string, error)
}

// readToken reads the bot's token file.
func readToken(cfg config.Telegram) (string, error) {
	tok, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("alert.telegram.token_file: %w", err)
	}
	t := strings.TrimSpace(string(tok))
	if t == "" {
		return "", fmt.Errorf("alert.telegram.token_file: %s is empty", cfg.TokenFile)
	}
	return t, nil
}

// runChat runs the bot until ctx ends. The Bot API may be unreachable
// at start (it asks getMe first): it tries again every 30 s meanwhile.
func (m *Module) runChat(ctx context.Context, cfg config.Telegram, token string) {
	for {
		b, err := tele.NewBot(tele.Settings{Token: token, URL: strings.TrimRight(cfg.APIURL, "/"),
			Poller:  &tele.LongPoller{Timeout: 20 * time.Second, AllowedUpdates: []string{"message", "callback_query"}},
			OnError: func(err error, _ tele.Context) { m.log.Warn("telegram", "err", err) }})
		if err == nil {
			c := &chat{m: m, bot: b, chats: map[int64]config.ChatUser{}, token: token}
			c.cmds = c.commands()
			for _, ch := range cfg.Chats {
				c.chats[ch.ID] = ch
			}
			b.Handle(tele.OnText, c.onText)
			b.Handle(tele.OnCallback, c.onButton)
			m.chat.Store(c)
			defer m.chat.Store(nil)
			go func() { <-ctx.Done(); b.Stop() }()
			m.log.Info("telegram bot running", "bot", b.Me.Username, "chats", len(cfg.Chats))
			b.Start()
			return
		}
		m.log.Warn("telegram bot not started; trying again in 30s", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
	}
}

func (c *chat) commands() map[string]chatCommand {
	return map[string]chatCommand{
		"/help":   {perm: "", usage: "/help: this list", run: func(context.Context, config.ChatUser, string) (string, error) { return c.help(), nil }},
		"/status": {perm: "system:read", usage: "/status: modules, uptime, disk", run: c.status},
		"/alerts": {perm: "alert:read", usage: "/alerts: what is pending or firing", run: c.alerts},
		"/silence": {perm: "alert:write", usage: `/silence <matchers> <duration> [comment]: e.g. /silence alertname="HighLatency" 2h deploying`,
			run: c.silence},
		"/silences":  {perm: "alert:read", usage: "/silences: active silences", run: c.silences},
		"/unsilence": {perm: "alert:write", usage: "/unsilence <id>: end a silence now", run: c.unsilence},
		"/ack":       {perm: "alert:write", usage: "/ack <alertname> [duration, 1h by default]: someone is on it; silences that firing alert for a while", run: c.ack},
		"/deploys":   {perm: "deploy:read", usage: "/deploys [service]: what version runs where", run: c.deploys},
		"/drift":     {perm: "deploy:read", usage: "/drift: hosts that run something else than they should, or went silent", run: c.drift},
		"/block": {perm: "policy:write", usage: "/block ip <address> [duration] [reason] or /block user <name> [duration] [reason]: the proxy and sign-in refuse it",
			run: c.block},
		"/unblock":  {perm: "policy:write", usage: "/unblock ip <address> or /unblock user <name>", run: c.unblock},
		"/loglevel": {perm: "system:write", usage: "/loglevel <module> <debug|info|warn|error> [duration, 10m by default]: back to the level before after that", run: c.loglevel},
	}
}

func (c *chat) help() string {
	var b strings.Builder
	b.WriteString("Commands:\n")
	for _, name := range []string{"/status", "/alerts", "/ack", "/silence", "/silences", "/unsilence", "/deploys", "/drift", "/block", "/unblock", "/loglevel", "/help"} {
		b.WriteString(c.cmds[name].usage + "\n")
	}
	return b.String()
}

// onText handles every message: commands are parsed here (unknown ones
// get the help), so nothing reaches Ops without the chat check.
func (c *chat) onText(tc tele.Context) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := tc.Chat().ID
	who, ok := c.chats[id]
	text := strings.TrimSpace(tc.Text())
	name, args, _ := strings.Cut(text, " ")
	if at := strings.IndexByte(name, '@'); at > 0 {
		name = name[:at]
	}
	name = strings.ToLower(name)
	if !ok {
		c.m.log.Warn("telegram: a chat that is not allowed", "chat", id, "text", truncate(text, 64))
		c.audit(ctx, "alert.chat.refused", map[string]any{"chat": id, "command": truncate(name, 32)})
		return tc.Send("This chat is not allowed to command Ops. Its id is " + fmt.Sprint(id) + "; an admin can add it to alert.telegram.chats.")
	}
	cmd, known := c.cmds[name]
	if !known {
		return tc.Send("Unknown command " + truncate(name, 32) + ".\n" + c.help())
	}
	rec := map[string]any{"chat": id, "user": who.User, "role": who.Role, "command": name, "args": truncate(args, 256)}
	if cmd.perm != "" && (c.m.deps.Allows == nil || !c.m.deps.Allows(who.Role, cmd.perm)) {
		rec["ok"], rec["error"] = false, "needs "+cmd.perm
		c.audit(ctx, "alert.chat.command", rec)
		return tc.Send(fmt.Sprintf("Not allowed: %s needs %s, and role %s does not have it.", name, cmd.perm, who.Role))
	}
	out, err := cmd.run(ctx, who, strings.TrimSpace(args))
	rec["ok"] = err == nil
	if err != nil {
		rec["error"] = err.Error()
		out = "Failed: " + err.Error()
	}
	c.audit(ctx, "alert.chat.command", rec)
	return tc.Send(out)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (c *chat) audit(ctx context.Context, typ string, data map[string]any) {
	b, _ := json.Marshal(data)
	e := event.NewJSON("/ops/alert/telegram", typ, b)
	if _, err := c.m.deps.Bus.PublishDerived(ctx, []event.Event{e}); err != nil {
		c.m.log.Warn("telegram: audit event not stored", "err", err)
	}
}

func (c *chat) status(context.Context, config.ChatUser, string) (string, error) {
	if c.m.deps.Status == nil {
		return "Ops is running.", nil
	}
	return c.m.deps.Status(), nil
}

func (c *chat) alerts(context.Context, config.ChatUser, string) (string, error) {
	as := c.m.active()
	if len(as) == 0 {
		return "No alert is pending or firing.", nil
	}
	var b strings.Builder
	for i, a := range as {
		if i == 20 {
			fmt.Fprintf(&b, "… and %d more\n", len(as)-20)
			break
		}
		fmt.Fprintf(&b, "%s %s since %s", a.State, a.Alert, a.ActiveAt.UTC().Format("Jan 2 15:04 UTC"))
		if s := a.Annotations["summary"]; s != "" {
			b.WriteString(": " + s)
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

// silence: /silence <matchers> <duration> [comment]; the matchers are
// one word (no spaces outside quotes are needed for them).
func (c *chat) silence(ctx context.Context, who config.ChatUser, args string) (string, error) {
	if c.m.router == nil {
		return "", errNoRouting
	}
	f := strings.Fields(args)
	if len(f) < 2 {
		return "", fmt.Errorf(`want /silence <matchers> <duration> [comment], e.g. /silence alertname="HighLatency" 2h deploying`)
	}
	sil, _, err := parseSilence(NewSilence{Matchers: f[0], For: f[1], Comment: strings.Join(f[2:], " ")}, time.Now())
	if err != nil {
		return "", err
	}
	sil.CreatedBy = "telegram:" + who.User
	if err := c.m.router.silences.Set(ctx, sil); err != nil {
		return "", err
	}
	if err := c.m.router.saveSilences(); err != nil {
		return "", err
	}
	s := toSilence(sil, time.Now())
	return fmt.Sprintf("Silenced %s until %s (id %s).", s.Matchers, s.EndsAt.UTC().Format("Jan 2 15:04 UTC"), s.ID), nil
}

func (c *chat) silences(ctx context.Context, _ config.ChatUser, _ string) (string, error) {
	if c.m.router == nil {
		return "", errNoRouting
	}
	sils, _, err := c.m.router.silences.Query(ctx, silence.QState("active"))
	if err != nil {
		return "", err
	}
	if len(sils) == 0 {
		return "No active silence.", nil
	}
	var b strings.Builder
	now := time.Now()
	for _, s := range sils {
		x := toSilence(s, now)
		fmt.Fprintf(&b, "%s until %s by %s (id %s)\n", x.Matchers, x.EndsAt.UTC().Format("Jan 2 15:04 UTC"), x.CreatedBy, x.ID)
	}
	return b.String(), nil
}

func (c *chat) unsilence(ctx context.Context, _ config.ChatUser, args string) (string, error) {
	if c.m.router == nil {
		return "", errNoRouting
	}
	id := strings.TrimSpace(args)
	if id == "" {
		return "", fmt.Errorf("want /unsilence <id> (the id /silences shows)")
	}
	if err := c.m.router.silences.Expire(ctx, id); err != nil {
		return "", err
	}
	if err := c.m.router.saveSilences(); err != nil {
		return "", err
	}
	return "Silence " + id + " ended.", nil
}

func (c *chat) services(service string) ([]deploy.Service, error) {
	if c.m.deps.Services == nil {
		return nil, errors.New("the deploy module does not run")
	}
	ss, ok := c.m.deps.Services(service)
	if !ok {
		return nil, errors.New("the deploy module does not run")
	}
	return ss, nil
}

func (c *chat) deploys(_ context.Context, _ config.ChatUser, args string) (string, error) {
	ss, err := c.services(strings.ToLower(strings.TrimSpace(args)))
	if err != nil {
		return "", err
	}
	if len(ss) == 0 {
		return "No deployment recorded" + map[bool]string{true: "", false: " for " + args}[args == ""] + ".", nil
	}
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "%s/%s: ", s.Service, s.Env)
		if s.Current != nil {
			fmt.Fprintf(&b, "%s since %s", s.Current.Version, s.Current.Updated.UTC().Format("Jan 2 15:04 UTC"))
		} else {
			b.WriteString("nothing succeeded yet")
		}
		if s.Desired != nil && (s.Current == nil || s.Desired.ID != s.Current.ID) {
			fmt.Fprintf(&b, ", rolling out %s (%s)", s.Desired.Version, s.Desired.Status)
		}
		if s.Drifted > 0 {
			fmt.Fprintf(&b, ", %d of %d hosts drift", s.Drifted, len(s.Hosts))
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

func (c *chat) drift(context.Context, config.ChatUser, string) (string, error) {
	ss, err := c.services("")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, s := range ss {
		for _, h := range s.Hosts {
			if len(h.Drift) == 0 {
				continue
			}
			fmt.Fprintf(&b, "%s/%s %s: %s", s.Service, s.Env, h.Host, strings.Join(h.Drift, ", "))
			if h.Version != "" {
				fmt.Fprintf(&b, " (runs %s)", h.Version)
			}
			b.WriteString("\n")
		}
	}
	if b.Len() == 0 {
		return "No host drifts.", nil
	}
	return b.String(), nil
}

// policyArgs reads "<ip|user> <subject>" and the rest.
func policyArgs(args string) (kind, subject string, rest []string, err error) {
	f := strings.Fields(args)
	if len(f) < 2 || (f[0] != policy.IP && f[0] != policy.User) {
		return "", "", nil, errors.New("want ip <address> or user <name>")
	}
	return f[0], f[1], f[2:], nil
}

func (c *chat) block(ctx context.Context, who config.ChatUser, args string) (string, error) {
	if c.m.deps.Policy == nil {
		return "", errors.New("the policy bucket is not open here")
	}
	kind, subject, rest, err := policyArgs(args)
	if err != nil {
		return "", err
	}
	ch := policy.Change{Reason: "telegram"}
	if kind == policy.IP {
		ch.IP = subject
	} else {
		ch.User = subject
	}
	if len(rest) > 0 {
		if _, err := time.ParseDuration(rest[0]); err == nil {
			ch.For, rest = rest[0], rest[1:]
		}
	}
	if len(rest) > 0 {
		ch.Reason = truncate(strings.Join(rest, " "), 200)
	}
	e, err := ch.Entry(time.Now())
	if err != nil {
		return "", err
	}
	e.By = "telegram:" + who.User
	if e, err = c.m.deps.Policy.Put(ctx, e); err != nil {
		return "", err
	}
	until := "until unblocked"
	if !e.Until.IsZero() {
		until = "until " + e.Until.UTC().Format("Jan 2 15:04 UTC")
	}
	return fmt.Sprintf("Blocked %s %s %s (%s).", e.Kind, e.Subject, until, e.Action), nil
}

func (c *chat) unblock(ctx context.Context, _ config.ChatUser, args string) (string, error) {
	if c.m.deps.Policy == nil {
		return "", errors.New("the policy bucket is not open here")
	}
	kind, subject, _, err := policyArgs(args)
	if err != nil {
		return "", err
	}
	norm, err := policy.Normalize(kind, subject)
	if err != nil {
		return "", err
	}
	if err := c.m.deps.Policy.Clear(ctx, kind, norm); err != nil {
		return "", err
	}
	if c.m.deps.PolicyCleared != nil {
		c.m.deps.PolicyCleared(kind, norm)
	}
	return fmt.Sprintf("Unblocked %s %s.", kind, norm), nil
}

func (c *chat) loglevel(_ context.Context, who config.ChatUser, args string) (string, error) {
	if c.m.deps.Logs == nil {
		return "", errors.New("log levels cannot be changed here")
	}
	f := strings.Fields(args)
	if len(f) < 2 || len(f) > 3 {
		return "", errors.New("want /loglevel <module> <debug|info|warn|error> [duration]")
	}
	d := 10 * time.Minute
	if len(f) == 3 {
		var err error
		if d, err = time.ParseDuration(f[2]); err != nil || d <= 0 || d > 24*time.Hour {
			return "", fmt.Errorf("duration: want 1s to 24h, got %q", f[2])
		}
	}
	module, level := f[0], strings.ToLower(f[1])
	prev := ""
	for _, ml := range c.m.deps.Logs.All() {
		if ml.Module == module {
			prev = ml.Level
		}
	}
	if err := c.m.deps.Logs.Update(module, level); err != nil {
		return "", err
	}
	set := ""
	for _, ml := range c.m.deps.Logs.All() {
		if ml.Module == module {
			set = ml.Level
		}
	}
	time.AfterFunc(d, func() {
		// Back to the level before, unless someone changed it since.
		for _, ml := range c.m.deps.Logs.All() {
			if ml.Module == module && ml.Level == set {
				_ = c.m.deps.Logs.Update(module, prev)
				c.m.log.Info("telegram: log level back", "module", module, "level", prev, "set_by", who.User)
			}
		}
	})
	return fmt.Sprintf("%s logs at %s for %s, then back to %s.", module, set, d, prev), nil
}

// ack silences a firing alert (by name) for a while, recording who is on
// it: /ack HighLatency 2h.
func (c *chat) ack(ctx context.Context, who config.ChatUser, args string) (string, error) {
	f := strings.Fields(args)
	if len(f) < 1 || len(f) > 2 {
		return "", errors.New("want /ack <alertname> [duration]")
	}
	d := "1h"
	if len(f) == 2 {
		d = f[1]
	}
	firing := false
	for _, a := range c.m.active() {
		if a.Alert == f[0] && a.State == "firing" {
			firing = true
		}
	}
	if !firing {
		return "", fmt.Errorf("%s is not firing (/alerts lists what is)", truncate(f[0], 64))
	}
	out, err := c.silence(ctx, who, fmt.Sprintf("alertname=%q %s acknowledged by %s", f[0], d, who.User))
	if err != nil {
		return "", err
	}
	return "Acknowledged " + f[0] + ". " + out, nil
}
