package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	amalert "github.com/prometheus/alertmanager/alert"
	amconfig "github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/notify/discord"
	"github.com/prometheus/alertmanager/notify/email"
	"github.com/prometheus/alertmanager/notify/msteamsv2"
	"github.com/prometheus/alertmanager/notify/opsgenie"
	"github.com/prometheus/alertmanager/notify/pagerduty"
	"github.com/prometheus/alertmanager/notify/slack"
	"github.com/prometheus/alertmanager/notify/telegram"
	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"
	"golang.org/x/time/rate"
)

// buildReceiver makes a receiver's integrations with Alertmanager's own
// notifiers. Ops links the common ones; a receiver of another kind (SNS,
// Jira, WeChat, ...) is refused with its name, rather than linking every
// notifier's client (they would add several MiB to the binary).
func buildReceiver(rc amconfig.Receiver, tmpl *template.Template, log *slog.Logger, limit *rate.Limiter, bot func() *chat) ([]notify.Integration, error) {
	other := map[string]int{"sns": len(rc.SNSConfigs), "wechat": len(rc.WechatConfigs), "victorops": len(rc.VictorOpsConfigs),
		"pushover": len(rc.PushoverConfigs), "webex": len(rc.WebexConfigs), "msteams (v1)": len(rc.MSTeamsConfigs), "jira": len(rc.JiraConfigs),
		"incidentio": len(rc.IncidentioConfigs), "rocketchat": len(rc.RocketchatConfigs), "mattermost": len(rc.MattermostConfigs)}
	for kind, n := range other {
		if n > 0 {
			return nil, fmt.Errorf("receiver %s: %s is not built into Ops (it has webhook, email, telegram, slack, pagerduty, opsgenie, msteamsv2, discord); a webhook to a bridge works for the rest", rc.Name, kind)
		}
	}
	var errs error
	var out []notify.Integration
	add := func(name string, i int, rs notify.ResolvedSender, n notify.Notifier, err error) {
		if err != nil {
			errs = errors.Join(errs, err)
			return
		}
		if limit != nil {
			n = limited{Notifier: n, limit: limit}
		}
		out = append(out, notify.NewIntegration(n, rs, name, i, rc.Name))
	}
	l := func(name string) *slog.Logger { return log.With("integration", name) }
	for i, c := range rc.WebhookConfigs {
		n, err := webhook.New(c, tmpl, l("webhook"))
		add("webhook", i, c, n, err)
	}
	for i, c := range rc.EmailConfigs {
		add("email", i, c, email.New(c, tmpl, l("email")), nil)
	}
	for i, c := range rc.TelegramConfigs {
		am, err := telegram.New(c, tmpl, l("telegram"))
		var n notify.Notifier = am
		if err == nil && bot != nil {
			n = buttoned{am: am, conf: c, tmpl: tmpl, log: l("telegram"), bot: bot}
		}
		add("telegram", i, c, n, err)
	}
	for i, c := range rc.SlackConfigs {
		n, err := slack.New(c, tmpl, l("slack"))
		add("slack", i, c, n, err)
	}
	for i, c := range rc.PagerdutyConfigs {
		n, err := pagerduty.New(c, tmpl, l("pagerduty"))
		add("pagerduty", i, c, n, err)
	}
	for i, c := range rc.OpsGenieConfigs {
		n, err := opsgenie.New(c, tmpl, l("opsgenie"))
		add("opsgenie", i, c, n, err)
	}
	for i, c := range rc.MSTeamsV2Configs {
		n, err := msteamsv2.New(c, tmpl, l("msteamsv2"))
		add("msteamsv2", i, c, n, err)
	}
	for i, c := range rc.DiscordConfigs {
		n, err := discord.New(c, tmpl, l("discord"))
		add("discord", i, c, n, err)
	}
	return out, errs
}

// limited holds a receiver to alert.receiver_rate: over it, the
// notification is refused as retryable, so Alertmanager's retry stage
// tries again with backoff until the flush's time is up.
type limited struct {
	notify.Notifier
	limit *rate.Limiter
}

func (l limited) Notify(ctx context.Context, alerts ...*amalert.Alert) notify.NotifyVerdict {
	if !l.limit.Allow() {
		r := l.limit.Reserve()
		wait := r.Delay()
		r.Cancel()
		return notify.Retry(wait, fmt.Errorf("rate limited: alert.receiver_rate is %.0f per minute", float64(l.limit.Limit())*60), notify.RateLimitedReason)
	}
	return l.Notifier.Notify(ctx, alerts...)
}
