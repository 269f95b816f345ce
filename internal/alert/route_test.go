package alert_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/alert"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// webhook is Alertmanager's webhook payload (version 4).
type webhook struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []struct {
		Status       string            `json:"status"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     time.Time         `json:"startsAt"`
		EndsAt       time.Time         `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
		Fingerprint  string            `json:"fingerprint"`
	} `json:"alerts"`
}

// hookServer records what an Alertmanager webhook receiver is sent.
type hookServer struct {
	*httptest.Server
	mu   sync.Mutex
	got  []webhook
	raw  [][]byte
	fail int // answer 500 to this many requests first
}

func newHook(t *testing.T) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.fail > 0 {
			h.fail--
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		var p webhook
		if err := json.Unmarshal(b, &p); err != nil {
			t.Errorf("webhook body: %v: %s", err, b)
		}
		h.got = append(h.got, p)
		h.raw = append(h.raw, b)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, p := range h.got {
		out = append(out, p.Status+" "+p.GroupLabels["alertname"])
	}
	return out
}

const routing = `route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s/hook
        send_resolved: true
inhibit_rules:
  - source_matchers: [severity="page"]
    target_matchers: [severity="ticket"]
    equal: [service]
`

func group(loud string) string {
	return `groups:
  - name: web
    interval: 1s
    rules:
      - alert: Loud
        expr: vector(1) ` + loud + `
        labels: {severity: page, service: api}
        annotations: {summary: "api is down"}
      - alert: Quiet
        expr: vector(1) > 0
        labels: {severity: ticket, service: api}
      - alert: Hushed
        expr: vector(1) > 0
        labels: {severity: page, service: web}
`
}

// TestRoutingSilencesInhibition: an unchanged alertmanager.yml routes
// firing alerts to a webhook in Alertmanager's format; a silence made
// through the API mutes one alert, an inhibition rule another until the
// alert that inhibits it resolves, and the resolution is sent too.
func TestRoutingSilencesInhibition(t *testing.T) {
	hook := newHook(t)
	hook.fail = 1 // the receiver is down at first: Alertmanager's retry sends again
	dir := t.TempDir()
	amFile := filepath.Join(dir, "alertmanager.yml")
	_ = os.WriteFile(amFile, fmt.Appendf(nil, routing, hook.URL), 0o600)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.Alert.AlertmanagerConfig = amFile })
	base := r.URL + "/api/v1/alerts"

	for _, c := range []struct{ body, field string }{
		{`{"matchers":"alertname=~\".*\"","for":"1h"}`, "matchers"},
		{`{"matchers":"alertname=","for":"1h"}`, "matchers"},
		{`{"matchers":"alertname=\"Hushed\"","for":"forever"}`, "for"},
		{`{"matchers":"alertname=\"Hushed\""}`, "for"},
		{`{"matchers":"alertname=\"Hushed\"","ends_at":"2001-01-01T00:00:00Z"}`, "ends_at"},
		{`{"matchers":"=\"Hushed\"","for":"1h"}`, "matchers"},
		{`{"matchers":"alertname=\"Hushed\"","for":"1h","colour":"red"}`, ""},
	} {
		code, body := call(t, "POST", base+"/silences", r.Token, c.body)
		var e struct{ Field string }
		_ = json.Unmarshal([]byte(body), &e)
		if code != 400 || e.Field != c.field {
			t.Errorf("%s: %d %s, want 400 naming %s", c.body, code, body, c.field)
		}
	}
	code, body := call(t, "POST", base+"/silences", r.Token, `{"matchers":"alertname=\"Hushed\"","for":"2h","comment":"web is being moved"}`)
	if code != 201 || !strings.Contains(body, `"created_by":"token:first-run admin"`) || !strings.Contains(body, `"state":"active"`) {
		t.Fatalf("silence: %d %s", code, body)
	}
	if code, body := call(t, "PUT", base+"/rules/web", r.Token, group("> 0")); code != 200 {
		t.Fatalf("rules: %d %s", code, body)
	}
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if got := strings.Join(hook.seen(), ","); got != "firing Loud" {
			return fmt.Errorf("%q", got)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // Quiet (inhibited) and Hushed (silenced) stay quiet
	if got := strings.Join(hook.seen(), ","); got != "firing Loud" {
		t.Fatalf("after 3 s: %q, want only Loud", got)
	}
	hook.mu.Lock()
	p := hook.got[0]
	hook.mu.Unlock()
	a := p.Alerts[0]
	if p.Version != "4" || p.Receiver != "hook" || p.Status != "firing" || p.GroupKey != `{}:{alertname="Loud"}` ||
		p.CommonLabels["service"] != "api" || p.CommonAnnotations["summary"] != "api is down" || p.ExternalURL == "" ||
		len(p.Alerts) != 1 || a.Fingerprint == "" || !strings.Contains(a.GeneratorURL, "/graph?g0.expr=vector%281%29") ||
		a.StartsAt.IsZero() || a.Labels["severity"] != "page" {
		t.Fatalf("payload %+v", p)
	}

	// Loud resolves: its resolution is sent, and Quiet, no longer
	// inhibited, fires.
	if code, body := call(t, "PUT", base+"/rules/web", r.Token, group("> 2")); code != 200 {
		t.Fatalf("rules: %d %s", code, body)
	}
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		got := hook.seen()
		if len(got) < 3 || !(contains(got, "resolved Loud") && contains(got, "firing Quiet")) {
			return fmt.Errorf("%q", got)
		}
		return nil
	})
	if contains(hook.seen(), "firing Hushed") {
		t.Fatalf("a silenced alert was sent: %q", hook.seen())
	}

	// The silence is listed and can be expired once.
	var list struct {
		Silences []struct{ ID, Matchers, State string }
	}
	_, body = call(t, "GET", base+"/silences", r.Token, "")
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Silences) != 1 || list.Silences[0].Matchers != `{alertname="Hushed"}` {
		t.Fatalf("silences: %s", body)
	}
	if code, _ := call(t, "DELETE", base+"/silences/"+list.Silences[0].ID, r.Token, ""); code != 204 {
		t.Fatalf("expire: %d", code)
	}
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if !contains(hook.seen(), "firing Hushed") {
			return fmt.Errorf("%q", hook.seen())
		}
		return nil
	})
	if code, _ := call(t, "DELETE", base+"/silences/nosuch", r.Token, ""); code != 404 {
		t.Fatalf("expire unknown: %d", code)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestNoRouting: without alert.alertmanager_config, silences answer 409
// naming the setting; a broken alertmanager.yml, or one with a receiver
// Ops does not have, is refused naming the setting and the problem.
func TestNoRouting(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	code, body := call(t, "GET", r.URL+"/api/v1/alerts/silences", r.Token, "")
	if code != 409 || !strings.Contains(body, "alert.alertmanager_config") {
		t.Fatalf("%d %s", code, body)
	}
	dir := t.TempDir()
	for _, c := range []struct{ yml, want string }{
		{"route:\n  receiver: nope\nreceivers:\n  - name: x\n", `undefined receiver "nope"`},
		{"route:\n  receiver: x\nreceivers:\n  - name: x\n    sns_configs:\n      - topic_arn: arn:aws:sns:us-east-1:1:t\n", "sns is not built into Ops"},
		{"route:\n  receiver: x\n  group_wait: soon\nreceivers:\n  - name: x\n", "soon"},
	} {
		f := filepath.Join(dir, "am.yml")
		_ = os.WriteFile(f, []byte(c.yml), 0o600)
		err := alert.CheckRuleFiles(config.Alert{AlertmanagerConfig: f})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "alert.alertmanager_config") {
			t.Errorf("%q: %v, want an error naming alert.alertmanager_config and %q", c.yml, err, c.want)
		}
	}
}

// keyShape is a JSON value's keys and value kinds, recursively (arrays
// by their first element), to compare two payloads' structure.
func keyShape(v any) string {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sortStrings(keys)
		var b strings.Builder
		b.WriteString("{")
		for _, k := range keys {
			fmt.Fprintf(&b, "%s:%s,", k, keyShape(x[k]))
		}
		return b.String() + "}"
	case []any:
		if len(x) == 0 {
			return "[]"
		}
		return "[" + keyShape(x[0]) + "]"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestWebhookMatchesAlertmanager runs Debian's Alertmanager (0.25) with
// the same routing, sends it the alert Ops's rule makes, and checks that
// Ops's webhook payload has the same fields and the same values for
// everything but times and URLs (the fingerprint included).
func TestWebhookMatchesAlertmanager(t *testing.T) {
	bin, err := exec.LookPath("prometheus-alertmanager")
	testutil.Require(t, err == nil, "prometheus-alertmanager", "apt-get install --no-install-recommends prometheus-alertmanager")
	theirs, ours := newHook(t), newHook(t)
	dir := t.TempDir()
	for name, h := range map[string]*hookServer{"theirs.yml": theirs, "ours.yml": ours} {
		_ = os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, routing, h.URL), 0o600)
	}
	port := testutil.FreePort(t)
	am := exec.Command(bin, "--config.file="+filepath.Join(dir, "theirs.yml"), "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address=127.0.0.1:"+port, "--cluster.listen-address=")
	am.Stdout, am.Stderr = io.Discard, io.Discard
	if err := am.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = am.Process.Kill(); _ = am.Wait() })

	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.Alert.AlertmanagerConfig = filepath.Join(dir, "ours.yml") })
	one := "groups:\n  - name: web\n    interval: 1s\n    rules:\n      - alert: Loud\n        expr: vector(1) > 0\n        labels: {severity: page, service: api}\n        annotations: {summary: \"api is down\"}\n"
	if code, body := call(t, "PUT", r.URL+"/api/v1/alerts/rules/web", r.Token, one); code != 200 {
		t.Fatalf("rules: %d %s", code, body)
	}
	post := `[{"labels":{"alertname":"Loud","severity":"page","service":"api"},"annotations":{"summary":"api is down"},"generatorURL":"http://x/graph"}]`
	testutil.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		resp, err := http.Post("http://127.0.0.1:"+port+"/api/v2/alerts", "application/json", strings.NewReader(post))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("alertmanager answered %d", resp.StatusCode)
		}
		return nil
	})
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if len(theirs.seen()) == 0 || len(ours.seen()) == 0 {
			return fmt.Errorf("theirs %q, ours %q", theirs.seen(), ours.seen())
		}
		return nil
	})
	theirs.mu.Lock()
	ours.mu.Lock()
	defer theirs.mu.Unlock()
	defer ours.mu.Unlock()
	var a any
	var b map[string]any
	_ = json.Unmarshal(theirs.raw[0], &a)
	_ = json.Unmarshal(ours.raw[0], &b)
	// Alertmanager 0.35, whose notifier Ops runs, adds two fields that
	// 0.25 does not send (receivers ignore fields they do not know);
	// everything else must be the same.
	for _, k := range []string{"notification_reason", "routeLabels"} {
		if _, ok := b[k]; !ok {
			t.Errorf("ops's payload lacks %s", k)
		}
		delete(b, k)
	}
	if ka, kb := keyShape(a), keyShape(b); ka != kb {
		t.Fatalf("fields differ:\nalertmanager 0.25: %s\nops:               %s", ka, kb)
	}
	pa, pb := theirs.got[0], ours.got[0]
	same := func(p webhook) string {
		x := p.Alerts[0]
		return fmt.Sprint(p.Version, p.GroupKey, p.TruncatedAlerts, p.Status, p.Receiver, p.GroupLabels, p.CommonLabels, p.CommonAnnotations,
			x.Status, x.Labels, x.Annotations, x.Fingerprint, x.EndsAt.IsZero())
	}
	if same(pa) != same(pb) {
		t.Fatalf("values differ:\nalertmanager 0.25: %s\nops:               %s\n%s\n%s", same(pa), same(pb), theirs.raw[0], ours.raw[0])
	}
}

// TestTelegramAndEmailReceivers: Alertmanager's Telegram notifier talks
// to a fake Bot API that answers as Telegram does (sendMessage, JSON),
// and its e-mail notifier to a real SMTP server (aiosmtpd).
func TestTelegramAndEmailReceivers(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	type sent struct {
		Path string
		Body map[string]any
	}
	var mu sync.Mutex
	var msgs []sent
	bot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("bot api body: %v: %s", err, b)
		}
		mu.Lock()
		msgs = append(msgs, sent{r.URL.Path, body})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"ok":true,"result":{"message_id":%d,"date":%d,"chat":{"id":-100123,"type":"group","title":"ops"},"text":%q}}`,
			len(msgs), time.Now().Unix(), body["text"])
	}))
	t.Cleanup(bot.Close)
	dir := t.TempDir()
	amFile := filepath.Join(dir, "alertmanager.yml")
	_ = os.WriteFile(amFile, fmt.Appendf(nil, `route:
  receiver: team
  group_wait: 1s
receivers:
  - name: team
    telegram_configs:
      - api_url: %s
        bot_token: "123:secret"
        chat_id: -100123
        parse_mode: ""
        message: '{{ range .Alerts }}{{ .Labels.alertname }}: {{ .Annotations.summary }}{{ end }}'
    email_configs:
      - to: oncall@example.com
        from: ops@example.com
        smarthost: %s:%d
        require_tls: false
`, bot.URL, smtp.Host, smtp.Port), 0o600)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.Alert.AlertmanagerConfig = amFile })
	one := "groups:\n  - name: web\n    interval: 1s\n    rules:\n      - alert: Loud\n        expr: vector(1) > 0\n        annotations: {summary: \"api is down\"}\n"
	if code, body := call(t, "PUT", r.URL+"/api/v1/alerts/rules/web", r.Token, one); code != 200 {
		t.Fatalf("rules: %d %s", code, body)
	}
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(msgs) == 0 || len(smtp.Messages(t)) == 0 {
			return fmt.Errorf("telegram %d, mail %d", len(msgs), len(smtp.Messages(t)))
		}
		return nil
	})
	mu.Lock()
	m := msgs[0]
	mu.Unlock()
	if m.Path != "/bot123:secret/sendMessage" || fmt.Sprint(m.Body["chat_id"]) != "-100123" || m.Body["text"] != "Loud: api is down" {
		t.Fatalf("telegram: %+v", m)
	}
	mail := smtp.Messages(t)[0]
	if mail.Header.Get("To") != "oncall@example.com" || !strings.Contains(mail.Header.Get("Subject"), "Loud") {
		t.Fatalf("mail headers %v", mail.Header)
	}
}

// TestUndelivered: a receiver that stays down gets Alertmanager's
// retries, then the notification is recorded as ev.alert.undelivered.
func TestUndelivered(t *testing.T) {
	hook := newHook(t)
	hook.fail = 1 << 30
	dir := t.TempDir()
	amFile := filepath.Join(dir, "alertmanager.yml")
	_ = os.WriteFile(amFile, fmt.Appendf(nil, routing, hook.URL), 0o600)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.Alert.AlertmanagerConfig = amFile })
	one := "groups:\n  - name: web\n    interval: 1s\n    rules:\n      - alert: Loud\n        expr: vector(1) > 0\n        labels: {severity: page, service: api}\n"
	if code, body := call(t, "PUT", r.URL+"/api/v1/alerts/rules/web", r.Token, one); code != 200 {
		t.Fatalf("rules: %d %s", code, body)
	}
	var res struct {
		Events []struct {
			Event struct {
				Type    string
				Subject string
				Data    alert.Undelivered
			}
		}
	}
	testutil.CheckFor(t, 40*time.Second, 250*time.Millisecond, func() error {
		_, body := call(t, "GET", r.URL+"/api/v1/events?subject=ev.alert.undelivered", r.Token, "")
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			return err
		}
		if len(res.Events) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	d := res.Events[0].Event.Data
	if res.Events[0].Event.Subject != "hook" || d.Receiver != "hook" || d.GroupKey != `{}:{alertname="Loud"}` || len(d.Alerts) != 1 ||
		d.Alerts[0].Labels["alertname"] != "Loud" || d.Alerts[0].Status != "firing" || !strings.Contains(d.Error, "500") {
		t.Fatalf("undelivered %+v", res.Events[0].Event)
	}
	hook.mu.Lock()
	tries := hook.fail
	hook.mu.Unlock()
	if tries > 1<<30-2 {
		t.Fatalf("the receiver was tried %d times before the dead letter, want retries", 1<<30-tries)
	}
}

// TestReceiverRate: with alert.receiver_rate 2, a receiver gets two
// notifications at once; the others wait in Alertmanager's retries and
// those whose flush runs out of time become ev.alert.undelivered, saying
// why.
func TestReceiverRate(t *testing.T) {
	hook := newHook(t)
	dir := t.TempDir()
	amFile := filepath.Join(dir, "alertmanager.yml")
	_ = os.WriteFile(amFile, fmt.Appendf(nil, routing, hook.URL), 0o600)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Alert.AlertmanagerConfig = amFile
		c.Alert.ReceiverRate = 2
	})
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: many\n    interval: 1s\n    rules:\n")
	for i := range 5 {
		fmt.Fprintf(&rules, "      - alert: A%d\n        expr: vector(1) > 0\n", i)
	}
	if code, body := call(t, "PUT", r.URL+"/api/v1/alerts/rules/many", r.Token, rules.String()); code != 200 {
		t.Fatalf("rules: %d %s", code, body)
	}
	var res struct {
		Events []struct {
			Event struct{ Data alert.Undelivered }
		}
	}
	testutil.CheckFor(t, 40*time.Second, 250*time.Millisecond, func() error {
		_, body := call(t, "GET", r.URL+"/api/v1/events?subject=ev.alert.undelivered", r.Token, "")
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			return err
		}
		if len(res.Events) < 3 {
			return fmt.Errorf("%d undelivered", len(res.Events))
		}
		return nil
	})
	if got := len(hook.seen()); got != 2 {
		t.Fatalf("the receiver got %d notifications, want 2 (the burst)", got)
	}
	if e := res.Events[0].Event.Data.Error; !strings.Contains(e, "rate limited: alert.receiver_rate is 2 per minute") {
		t.Fatalf("undelivered because %q", e)
	}
}
