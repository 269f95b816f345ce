package analytics_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// parts walks a MIME message and returns its leaf parts by content type
// (decoded) and the Content-IDs of images.
func parts(t *testing.T, m *mail.Message) (map[string]string, map[string][]byte) {
	t.Helper()
	text, images := map[string]string{}, map[string][]byte{}
	var walk func(ct string, hdr func(string) string, body io.Reader)
	walk = func(ct string, hdr func(string) string, body io.Reader) {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				walk(p.Header.Get("Content-Type"), p.Header.Get, p)
			}
		}
		var r io.Reader = body
		switch hdr("Content-Transfer-Encoding") {
		case "quoted-printable":
			r = quotedprintable.NewReader(body)
		case "base64":
			b, _ := io.ReadAll(body)
			dec := make([]byte, len(b))
			n, err := decodeB64(b, dec)
			if err != nil {
				t.Fatal(err)
			}
			r = bytes.NewReader(dec[:n])
		}
		b, _ := io.ReadAll(r)
		if strings.HasPrefix(mt, "image/") {
			images[strings.Trim(hdr("Content-Id"), "<>")] = b
		} else {
			text[mt] = string(b)
		}
	}
	walk(m.Header.Get("Content-Type"), m.Header.Get, m.Body)
	return text, images
}

// TestEmailReports: a daily report goes out by itself once yesterday is
// over and the store has caught up, through a real SMTP server, with the
// numbers the API gives; it is sent once per period across restarts; "send
// now" sends it again; a dead mail server is a clear 502.
func TestEmailReports(t *testing.T) {
	smtp := testutil.StartSMTP(t)
	dir := t.TempDir()
	now := time.Now().UTC()
	yesterday := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
	base := func(c *config.Config) {
		c.DataDir = dir
		c.Collector.WriteKeys = config.Strings{key}
	}
	// Yesterday's traffic, stored before the report is configured.
	r := testutil.StartApp(t, []string{"all"}, base)
	var msgs []string
	for i := range 7 {
		msgs = append(msgs, page(fmt.Sprintf("y%d", i), fmt.Sprintf("/p%d", i%3), "https://www.google.com/", yesterday.Add(time.Duration(10+i)*time.Hour)))
	}
	msgs = append(msgs, strings.ReplaceAll(page("other", "/x", "", yesterday.Add(9*time.Hour)), "shop.example", "other.example"))
	send(t, r.URL, "/v1/batch", "", msgs...)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var st struct{ Events int }
		get(t, r.URL, "/api/v1/analytics/status", r.Token, &st)
		if st.Events != 8 {
			return fmt.Errorf("%d events", st.Events)
		}
		return nil
	})
	r.Stop()

	withReport := func(c *config.Config) {
		base(c)
		c.SMTP = config.SMTP{Host: smtp.Host, Port: smtp.Port, From: "Ops <ops@example.com>", TLS: "starttls"}
		c.Analytics.Reports = []config.Report{{Name: "daily", To: []string{"ann@example.com"}, Every: "day", Site: "shop.example"}}
	}
	r = testutil.StartApp(t, []string{"all"}, withReport)
	var got []*mail.Message
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if got = smtp.Messages(t); len(got) != 1 {
			return fmt.Errorf("%d messages", len(got))
		}
		return nil
	})
	m := got[0]
	subject, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if m.Header.Get("To") != "ann@example.com" || !strings.Contains(subject, "Daily report: daily: 7 visitors") {
		t.Fatalf("headers: To %q, Subject %q", m.Header.Get("To"), subject)
	}
	text, images := parts(t, m)
	var agg aggAnswer
	day := yesterday.Format(time.DateOnly)
	get(t, r.URL, "/api/v1/analytics/aggregate?period=custom&from="+day+"&to="+day+"&site=shop.example", r.Token, &agg)
	if agg.Results.Visitors != 7 || !strings.Contains(text["text/html"], fmt.Sprintf(">%d</div>", agg.Results.Visitors)) ||
		!strings.Contains(text["text/plain"], "/p0") || !strings.Contains(text["text/html"], "Google") || strings.Contains(text["text/html"], "/x<") {
		t.Fatalf("report body (API says %+v):\n%s\n%s", agg.Results, text["text/plain"], text["text/html"])
	}
	if !strings.Contains(text["text/html"], `src="cid:chart"`) {
		t.Fatal("the HTML does not show the chart")
	}
	if img, err := png.Decode(bytes.NewReader(images["chart"])); err != nil || img.Bounds().Dx() != 600 {
		t.Fatalf("chart: %v", err)
	}

	// Restarted: the period is recorded as sent, so nothing more goes.
	r.Stop()
	r = testutil.StartApp(t, []string{"all"}, withReport)
	time.Sleep(1500 * time.Millisecond)
	if n := len(smtp.Messages(t)); n != 1 {
		t.Fatalf("%d messages after a restart, want still 1", n)
	}
	var list struct{ Reports []map[string]any }
	get(t, r.URL, "/api/v1/analytics/reports", r.Token, &list)
	if len(list.Reports) != 1 || list.Reports[0]["last_sent"] != day+"/day" {
		t.Fatalf("reports: %v", list.Reports)
	}
	// Send now: once more, on request.
	req, _ := http.NewRequest("POST", r.URL+"/api/v1/analytics/reports/daily/send", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("send now: %v %v", err, resp)
	}
	resp.Body.Close()
	if n := len(smtp.Messages(t)); n != 2 {
		t.Fatalf("%d messages after send now, want 2", n)
	}
	req, _ = http.NewRequest("POST", r.URL+"/api/v1/analytics/reports/nope/send", nil)
	if resp, _ := http.DefaultClient.Do(req); resp == nil || resp.StatusCode != 404 {
		t.Fatalf("unknown report: %v", resp)
	}
}

// TestReportConfig: bad report settings are refused naming the key.
func TestReportConfig(t *testing.T) {
	c := config.Default()
	c.Analytics.Reports = []config.Report{{Name: "x", Every: "hourly", To: []string{"not an address"}}}
	errs := c.Validate()
	for _, want := range []string{"analytics.reports[0]: e-mail reports need smtp.host", "analytics.reports[0].every", "analytics.reports[0].to[0]"} {
		if !strings.Contains(errs.Error(), want) {
			t.Fatalf("errors %v lack %q", errs, want)
		}
	}
	c = config.Default()
	c.SMTP = config.SMTP{Host: "mail.example", Port: 587, From: "ops", TLS: "none", Username: "u"}
	if e := c.Validate().Error(); !strings.Contains(e, "smtp.from") || !strings.Contains(e, "smtp.username") {
		t.Fatalf("smtp errors: %s", e)
	}
}

func decodeB64(src, dst []byte) (int, error) {
	clean := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, src)
	return base64Std.Decode(dst, clean)
}

var base64Std = base64.StdEncoding
