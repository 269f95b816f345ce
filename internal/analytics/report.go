package analytics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/mailer"
	"github.com/opsgraph/ops/internal/reply"
)

// Scheduled e-mail reports: for each of analytics.reports, once its period
// (yesterday, or last Monday to Sunday) is over and the store has caught up
// with the bus, Ops sends the period's totals against the period before,
// the top pages and sources and a chart, then records the period as sent
// in the KV bucket OPS_REPORTS. Delivery is at least once: a crash between
// the server's acceptance and the record sends that report again at the
// next start.

const reportBucket = "OPS_REPORTS"

// reportTick is how often the schedule is looked at.
var reportTick = time.Minute

// reportPeriod is the last whole period of a report before now: its range
// and the key that records it as sent.
func reportPeriod(every string, now time.Time) (Range, string) {
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	if every == "week" {
		monday := today.AddDate(0, 0, -((int(today.Weekday()) + 6) % 7))
		return Range{monday.AddDate(0, 0, -7), monday}, monday.AddDate(0, 0, -7).Format("2006-01-02") + "/week"
	}
	return Range{today.AddDate(0, 0, -1), today}, today.AddDate(0, 0, -1).Format("2006-01-02") + "/day"
}

// schedule sends the reports that are due, every reportTick, until ctx
// ends.
func (m *Module) schedule(ctx context.Context) {
	if len(m.cfg.Reports) == 0 {
		return
	}
	// Not before the store holds what the bus held at start: a report
	// from a half-replayed store would be wrong.
	for !m.caughtUp.Load() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	t := time.NewTicker(reportTick)
	defer t.Stop()
	for {
		m.sendDue(ctx, time.Now().UTC())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Module) sendDue(ctx context.Context, now time.Time) {
	kv, err := m.deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: reportBucket, Description: "the last period each e-mail report was sent for", History: 1})
	if err != nil {
		m.log.Warn("reports: cannot open the record of sent reports", "err", err)
		return
	}
	for _, r := range m.cfg.Reports {
		rg, key := reportPeriod(r.Every, now)
		if e, err := kv.Get(ctx, r.Name); err == nil && string(e.Value()) == key {
			continue
		} else if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err := m.sendReport(ctx, r, rg); err != nil {
			m.log.Warn("report not sent; trying again at the next tick", "report", r.Name, "err", err)
			continue
		}
		if _, err := kv.Put(ctx, r.Name, []byte(key)); err != nil {
			m.log.Warn("report sent but not recorded: it may be sent again", "report", r.Name, "err", err)
		}
		m.log.Info("report sent", "report", r.Name, "period", key, "to", strings.Join(r.To, ", "))
	}
}

// sendReport mails report r for range rg.
func (m *Module) sendReport(ctx context.Context, r config.Report, rg Range) error {
	msg, err := m.buildReport(r, rg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return mailer.Send(ctx, m.deps.SMTP, msg)
}

type reportData struct {
	Title, Period, Site string
	Stats               []reportStat
	Pages, Sources      []Row
	Chart               bool
}

type reportStat struct {
	Label, Value, Change string
	Up                   bool
}

var reportHTML = template.Must(template.New("report").Parse(`<!doctype html>
<html><body style="font-family:-apple-system,Segoe UI,Roboto,sans-serif;color:#1b1f24;max-width:640px;margin:0 auto;padding:16px">
<h1 style="font-size:20px;margin:0 0 4px">{{.Title}}</h1>
<p style="color:#5b6470;margin:0 0 16px">{{.Period}}{{if .Site}} · {{.Site}}{{end}}</p>
<table role="presentation" style="border-collapse:collapse;width:100%;margin-bottom:16px"><tr>
{{range .Stats}}<td style="padding:8px;border:1px solid #dde1e6"><div style="font-size:11px;color:#5b6470;text-transform:uppercase">{{.Label}}</div>
<div style="font-size:20px;font-weight:bold">{{.Value}}</div>{{if .Change}}<div style="font-size:12px;color:{{if .Up}}#13795b{{else}}#b3261e{{end}}">{{.Change}}</div>{{end}}</td>{{end}}
</tr></table>
{{if .Chart}}<p><img src="cid:chart" alt="Visitors by day" width="600" height="160" style="max-width:100%"></p>{{end}}
<h2 style="font-size:16px">Top pages</h2>
<table style="border-collapse:collapse;width:100%">{{range .Pages}}<tr><td style="padding:4px;border-bottom:1px solid #dde1e6">{{.Value}}</td><td style="padding:4px;border-bottom:1px solid #dde1e6;text-align:right">{{.Visitors}}</td></tr>{{else}}<tr><td>No page views.</td></tr>{{end}}</table>
<h2 style="font-size:16px">Top sources</h2>
<table style="border-collapse:collapse;width:100%">{{range .Sources}}<tr><td style="padding:4px;border-bottom:1px solid #dde1e6">{{if .Value}}{{.Value}}{{else}}Direct / none{{end}}</td><td style="padding:4px;border-bottom:1px solid #dde1e6;text-align:right">{{.Visitors}}</td></tr>{{else}}<tr><td>No visits.</td></tr>{{end}}</table>
<p style="color:#5b6470;font-size:12px;margin-top:24px">Sent by Ops (analytics.reports). Days are UTC.</p>
</body></html>
`))

// buildReport makes the e-mail of report r for range rg.
func (m *Module) buildReport(r config.Report, rg Range) (*mailer.Message, error) {
	var fs []Filter
	if r.Site != "" {
		fs = append(fs, Filter{Dim: DimHostname, Op: OpIs, Values: []string{strings.ToLower(r.Site)}})
	}
	cur, prev := m.store.Aggregate(rg.query(fs)), m.store.Aggregate(rg.previous().query(fs))
	pages, _ := m.store.Breakdown(rg.query(fs), DimPage, "", 5, 1)
	sources, _ := m.store.Breakdown(rg.query(fs), DimSource, "", 5, 1)
	iv := Day
	if r.Every == "day" {
		iv = Hour
	}
	points := m.store.Timeseries(rg.query(fs), iv)
	period := rg.From.Format("Mon 2 Jan 2006")
	kind := "Daily"
	if r.Every == "week" {
		kind = "Weekly"
		period += " to " + rg.To.AddDate(0, 0, -1).Format("Mon 2 Jan 2006")
	}
	d := reportData{Title: kind + " report: " + r.Name, Period: period, Site: r.Site, Pages: pages, Sources: sources, Chart: len(points) > 0}
	stat := func(label string, v, p float64, show func(float64) string, lowerIsBetter bool) {
		s := reportStat{Label: label, Value: show(v)}
		if p > 0 {
			ch := (v - p) / p * 100
			arrow := "↑"
			if ch < 0 {
				arrow = "↓"
			}
			s.Change = fmt.Sprintf("%s %.0f%% on the period before", arrow, abs(ch))
			s.Up = (ch >= 0) != lowerIsBetter
		}
		d.Stats = append(d.Stats, s)
	}
	count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	stat("Visitors", float64(cur.Visitors), float64(prev.Visitors), count, false)
	stat("Visits", float64(cur.Visits), float64(prev.Visits), count, false)
	stat("Page views", float64(cur.Pageviews), float64(prev.Pageviews), count, false)
	stat("Bounce rate", cur.BounceRate, prev.BounceRate, func(v float64) string { return fmt.Sprintf("%.0f%%", v) }, true)
	stat("Visit duration", cur.VisitDuration, prev.VisitDuration, func(v float64) string { return (time.Duration(v) * time.Second).String() }, false)
	var html bytes.Buffer
	if err := reportHTML.Execute(&html, d); err != nil {
		return nil, err
	}
	var text strings.Builder
	fmt.Fprintf(&text, "%s\n%s%s\n\n", d.Title, d.Period, map[bool]string{true: " · " + r.Site, false: ""}[r.Site != ""])
	for _, s := range d.Stats {
		fmt.Fprintf(&text, "%-15s %10s  %s\n", s.Label, s.Value, s.Change)
	}
	text.WriteString("\nTop pages\n")
	for _, p := range pages {
		fmt.Fprintf(&text, "  %-40s %8d\n", p.Value, p.Visitors)
	}
	text.WriteString("\nTop sources\n")
	for _, p := range sources {
		v := p.Value
		if v == "" {
			v = "Direct / none"
		}
		fmt.Fprintf(&text, "  %-40s %8d\n", v, p.Visitors)
	}
	msg := &mailer.Message{To: r.To, Subject: fmt.Sprintf("%s: %d visitors, %s", d.Title, cur.Visitors, d.Period), Text: text.String(), HTML: html.String()}
	if d.Chart {
		vals := make([]float64, len(points))
		for i, p := range points {
			vals[i] = float64(p.Visitors)
		}
		msg.Inline = append(msg.Inline, mailer.Inline{ID: "chart", ContentType: "image/png", Data: barChart(vals, 600, 160)})
	}
	return msg, nil
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// barChart draws vals as a PNG bar chart: a picture every mail client
// shows (inline SVG is not).
func barChart(vals []float64, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	bg, bar, axis := color.RGBA{255, 255, 255, 255}, color.RGBA{41, 98, 217, 255}, color.RGBA{221, 225, 230, 255}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, bg)
		}
	}
	for x := 0; x < w; x++ {
		img.Set(x, h-1, axis)
	}
	top := 0.0
	for _, v := range vals {
		top = max(top, v)
	}
	if top == 0 || len(vals) == 0 {
		var b bytes.Buffer
		_ = png.Encode(&b, img)
		return b.Bytes()
	}
	slot := float64(w) / float64(len(vals))
	gap := max(1, int(slot*0.2))
	for i, v := range vals {
		x0 := int(float64(i) * slot)
		x1 := int(float64(i+1)*slot) - gap
		bh := int(v / top * float64(h-8))
		for x := x0; x < x1 && x < w; x++ {
			for y := h - 1 - bh; y < h-1; y++ {
				img.Set(x, y, bar)
			}
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}

// reportsHandler lists the configured reports and the period each was
// last sent for.
func (m *Module) reportsHandler(w http.ResponseWriter, r *http.Request) {
	var kv jetstream.KeyValue
	if len(m.cfg.Reports) > 0 {
		kv, _ = m.deps.Bus.KeyValue(r.Context(), jetstream.KeyValueConfig{Bucket: reportBucket, Description: "the last period each e-mail report was sent for", History: 1})
	}
	out := []map[string]any{}
	for _, rp := range m.cfg.Reports {
		row := map[string]any{"name": rp.Name, "to": rp.To, "every": rp.Every, "site": rp.Site}
		if kv != nil {
			if e, err := kv.Get(r.Context(), rp.Name); err == nil {
				row["last_sent"] = string(e.Value())
			}
		}
		out = append(out, row)
	}
	reply.JSON(w, http.StatusOK, map[string]any{"reports": out})
}

// sendNow serves POST /api/v1/analytics/reports/{name}/send: the report of
// its last whole period, now, to its recipients (not recorded: the
// scheduled one still goes).
func (m *Module) sendNow(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, rp := range m.cfg.Reports {
		if rp.Name != name {
			continue
		}
		rg, key := reportPeriod(rp.Every, time.Now().UTC())
		if err := m.sendReport(r.Context(), rp, rg); err != nil {
			reply.Error(w, http.StatusBadGateway, "smtp", err.Error())
			return
		}
		reply.JSON(w, http.StatusOK, map[string]any{"report": name, "period": key, "to": rp.To})
		return
	}
	reply.Error(w, http.StatusNotFound, "name", fmt.Sprintf("no report %q in analytics.reports", name))
}
