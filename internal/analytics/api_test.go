package analytics_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/analytics"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

const key = "wk_analytics_test"

func send(t *testing.T, base, path, ua string, msgs ...string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(`{"batch":[`+strings.Join(msgs, ",")+`]}`))
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/json")
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	resp, err := testutil.Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
}

func page(aid, path, ref string, at time.Time) string {
	return fmt.Sprintf(`{"type":"page","anonymousId":%q,"timestamp":%q,"context":{"page":{"path":%q,"url":"https://shop.example%s","referrer":%q},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36","screen":{"width":1920}}}`,
		aid, at.Format(time.RFC3339Nano), path, path, ref)
}

func get(t *testing.T, base, path string, token string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := testutil.Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if s, ok := out.(*string); ok {
			*s = string(b)
		} else if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v %s", path, err, b)
		}
	}
	return resp.StatusCode
}

type aggAnswer struct {
	Results    analytics.Totals
	Comparison struct {
		Results analytics.Totals
		Change  map[string]*float64
	}
}

// TestReportsThroughTheAPI sends tracking messages the way SDKs and the
// browser tracker do and reads the reports back: totals, breakdowns,
// filters, CSV, realtime, and the errors bad parameters get.
func TestReportsThroughTheAPI(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Collector.WriteKeys = config.Strings{key}
		c.Analytics.Goals = config.Strings{"event==Signup", "page==/blog/**"}
		c.Analytics.Funnels = []config.Funnel{{Name: "signup", Steps: []string{"page==/", "page==/pricing", "event==Signup"}}}
	})
	now := time.Now().UTC()
	base := now.Add(-3 * time.Hour)
	if now.Hour() < 4 { // keep every event on today
		base = time.Date(now.Year(), now.Month(), now.Day(), 0, 1, 0, 0, time.UTC)
	}
	send(t, r.URL, "/v1/batch", "",
		page("a1", "/", "https://www.google.com/", base),
		page("a1", "/pricing", "https://shop.example/", base.Add(2*time.Minute)),
		fmt.Sprintf(`{"type":"track","event":"Signup","anonymousId":"a1","timestamp":%q,"properties":{"plan":"pro"},"context":{"page":{"path":"/pricing","url":"https://shop.example/pricing"}}}`, base.Add(3*time.Minute).Format(time.RFC3339Nano)),
		page("a2", "/", "", base.Add(time.Minute)),
		page("a3", "/blog/x", "", base.Add(5*time.Minute)),
		page("a3", "/blog/y", "", base.Add(50*time.Minute)),
	)
	// A bot is left out.
	send(t, r.URL, "/v1/batch", "", strings.Replace(page("bot", "/", "", base), "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Googlebot/2.1 (+http://www.google.com/bot.html)", 1))
	var agg aggAnswer
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		get(t, r.URL, "/api/v1/analytics/aggregate?period=day", r.Token, &agg)
		// The page views and the track event are two messages (one per
		// subject) that may be stored in either order: wait for both.
		if agg.Results.Pageviews != 5 || agg.Results.Events != 1 {
			return fmt.Errorf("%+v", agg.Results)
		}
		return nil
	})
	want := analytics.Totals{Visitors: 3, Visits: 4, Pageviews: 5, ViewsPerVisit: 1.25, BounceRate: 75, Events: 1,
		VisitDuration: 45} // a1: 180 s over 4 visits, the others 0 s
	if agg.Results != want {
		t.Fatalf("aggregate: %+v, want %+v", agg.Results, want)
	}
	check := func(query string, w analytics.Totals) {
		t.Helper()
		var a aggAnswer
		if code := get(t, r.URL, "/api/v1/analytics/aggregate?period=day&"+query, r.Token, &a); code != 200 || a.Results != w {
			t.Errorf("%s: %d %+v, want %+v", query, code, a.Results, w)
		}
	}
	check("filters="+url.QueryEscape("page==/blog/**"), analytics.Totals{Visitors: 1, Visits: 2, Pageviews: 2, ViewsPerVisit: 1, BounceRate: 100})
	check("filters="+url.QueryEscape("prop:plan==pro"), analytics.Totals{Visitors: 1, Visits: 1, Events: 1, VisitDuration: 180, BounceRate: 0})
	check("filters="+url.QueryEscape("source==Google"), analytics.Totals{Visitors: 1, Visits: 1, Pageviews: 2, ViewsPerVisit: 2, VisitDuration: 180, Events: 1})
	check("site=shop.example&filters="+url.QueryEscape("browser==Chrome;screen==Desktop"), want)
	check("site=other.example", analytics.Totals{})

	var bd struct {
		Results []analytics.Row
		Total   int
	}
	get(t, r.URL, "/api/v1/analytics/breakdown?period=day&property=source", r.Token, &bd)
	got := map[string]int{}
	for _, row := range bd.Results {
		got[row.Value] = row.Visitors
	}
	if bd.Total != 2 || got["Google"] != 1 || got[""] != 2 {
		t.Errorf("sources: %+v", bd)
	}
	var csvText string
	get(t, r.URL, "/api/v1/analytics/breakdown?period=day&property=page&format=csv", r.Token, &csvText)
	recs, err := csv.NewReader(strings.NewReader(csvText)).ReadAll()
	if err != nil || len(recs) != 5 || recs[0][0] != "page" || recs[0][1] != "visitors" || recs[1][0] != "/" || recs[1][1] != "2" {
		t.Errorf("CSV: %v %q", err, csvText)
	}
	var ts struct{ Results []analytics.Point }
	get(t, r.URL, "/api/v1/analytics/timeseries?period=7d", r.Token, &ts)
	if len(ts.Results) != 7 || ts.Results[6].Pageviews != 5 {
		t.Errorf("timeseries: %+v", ts.Results)
	}
	var tsc struct {
		Results    []analytics.Point
		Comparison struct {
			Range   map[string]string
			Results []analytics.Point
		}
	}
	get(t, r.URL, "/api/v1/analytics/timeseries?period=7d&compare=previous_period", r.Token, &tsc)
	prevTo := time.Now().UTC().AddDate(0, 0, -7).Format(time.DateOnly)
	if len(tsc.Comparison.Results) != 7 || tsc.Comparison.Range["to"] != prevTo || tsc.Comparison.Results[6].Pageviews != 0 || tsc.Results[6].Pageviews != 5 {
		t.Errorf("timeseries comparison: %+v", tsc.Comparison)
	}
	get(t, r.URL, "/api/v1/analytics/aggregate?period=day&compare=previous_period", r.Token, &agg)
	if agg.Comparison.Results.Visitors != 0 || agg.Comparison.Change["visitors"] != nil {
		t.Errorf("comparison: %+v", agg.Comparison)
	}

	// Realtime: a new page view shows within 2 s.
	send(t, r.URL, "/v1/batch", "", page("a9", "/now", "", time.Now().UTC()))
	deadline := time.Now().Add(2 * time.Second)
	for {
		var rt analytics.Totals
		get(t, r.URL, "/api/v1/analytics/realtime", r.Token, &rt)
		if rt.Visitors >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("realtime did not show the new visitor within 2 s: %+v", rt)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Goals, funnels and retention (a9 above is a fourth visitor).
	var goals struct{ Results []analytics.Conversion }
	get(t, r.URL, "/api/v1/analytics/goals?period=day", r.Token, &goals)
	if len(goals.Results) != 2 || goals.Results[0] != (analytics.Conversion{Goal: "event==Signup", Visitors: 1, Events: 1, ConversionRate: 25}) ||
		goals.Results[1] != (analytics.Conversion{Goal: "page==/blog/**", Visitors: 1, Events: 2, ConversionRate: 25}) {
		t.Errorf("goals: %+v", goals.Results)
	}
	var fn struct{ Steps []analytics.FunnelStep }
	get(t, r.URL, "/api/v1/analytics/funnel?period=day&funnel=signup", r.Token, &fn)
	if len(fn.Steps) != 3 || fn.Steps[0].Visitors != 2 || fn.Steps[1].Visitors != 1 || fn.Steps[2].Visitors != 1 || fn.Steps[1].DropOffRate != 50 {
		t.Errorf("funnel: %+v", fn.Steps)
	}
	get(t, r.URL, "/api/v1/analytics/funnel?period=day&window=1m&steps="+url.QueryEscape("page==/;event==Signup"), r.Token, &fn)
	if len(fn.Steps) != 2 || fn.Steps[0].Visitors != 2 || fn.Steps[1].Visitors != 0 { // the signup came 3 minutes after /
		t.Errorf("funnel with a 1 minute window: %+v", fn.Steps)
	}
	get(t, r.URL, "/api/v1/analytics/funnel?period=day&format=csv&funnel=signup", r.Token, &csvText)
	if recs, err := csv.NewReader(strings.NewReader(csvText)).ReadAll(); err != nil || len(recs) != 4 || recs[3][0] != "event==Signup" || recs[3][1] != "1" {
		t.Errorf("funnel CSV: %v %q", err, csvText)
	}
	var ret struct{ Cohorts []analytics.Cohort }
	get(t, r.URL, "/api/v1/analytics/retention?period=7d", r.Token, &ret)
	if len(ret.Cohorts) != 7 || ret.Cohorts[6].Visitors < 3 || ret.Cohorts[6].Returning[0] != ret.Cohorts[6].Visitors {
		t.Errorf("retention: %+v", ret.Cohorts)
	}

	// Bad parameters name the field.
	for q, field := range map[string]string{
		"breakdown?property=nope":                                              "property",
		"breakdown?property=page&limit=0":                                      "limit",
		"aggregate?filters=" + url.QueryEscape("nope==x"):                      "filters",
		"aggregate?filters=" + url.QueryEscape("page=x"):                       "filters",
		"aggregate?period=forever":                                             "period",
		"aggregate?period=custom&from=2020-01-01&to=2026-01-01":                "period",
		"aggregate?period=custom&from=2026-01-02&to=2026-01-01":                "to",
		"aggregate?date=yesterday":                                             "date",
		"timeseries?interval=minute":                                           "interval",
		"timeseries?period=custom&from=2025-01-01&to=2026-01-01&interval=hour": "interval",
		"aggregate?compare=last_year":                                          "compare",
		"timeseries?compare=yes":                                               "compare",
		"goals?goals=" + url.QueryEscape("source==Google"):                     "goals",
		"funnel?steps=" + url.QueryEscape("page==/"):                           "steps",
		"funnel": "steps",
		"funnel?steps=" + url.QueryEscape("page==/;page==/x") + "&window=1y": "window",
		"retention?interval=month":           "interval",
		"retention?period=year&interval=day": "period",
	} {
		var e struct{ Error, Field string }
		if code := get(t, r.URL, "/api/v1/analytics/"+q, r.Token, &e); code != 400 || e.Field != field {
			t.Errorf("%s: %d %+v, want 400 naming %s", q, code, e, field)
		}
	}
	// Reading the reports needs a token (viewer).
	if code := get(t, r.URL, "/api/v1/analytics/aggregate", "", nil); code != 401 {
		t.Errorf("no token: %d", code)
	}
	var st analytics.Status
	get(t, r.URL, "/api/v1/analytics/status", r.Token, &st)
	if !st.CaughtUp || st.Events < 7 || st.Progress != 1 {
		t.Errorf("status %+v", st)
	}
}

// TestCountriesFromGeoDB: with collector.geoip, a browser's address or a
// server SDK's context.ip gives the visit's country; a country the client
// sent stands; a server's own address is not used.
func TestCountriesFromGeoDB(t *testing.T) {
	db := testutil.WriteCountryDB(t, map[string]string{"127.0.0.0/8": "NL", "81.2.69.0/24": "GB"})
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Collector.WriteKeys = config.Strings{key}
		c.Collector.GeoIP = db
	})
	at := time.Now().UTC().Add(-time.Minute)
	msg := func(aid, ctx string) string {
		return fmt.Sprintf(`{"type":"page","anonymousId":%q,"timestamp":%q,"context":{"page":{"path":"/","url":"https://shop.example/"}%s}}`, aid, at.Format(time.RFC3339Nano), ctx)
	}
	send(t, r.URL, "/v1/b", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", msg("browser", ""))
	send(t, r.URL, "/v1/batch", "", msg("sdk-ip", `,"ip":"81.2.69.142"`), msg("sdk-own", `,"ip":"81.2.69.142","location":{"country":"FR"}`), msg("sdk-none", ""))
	want := map[string]int{"NL": 1, "GB": 1, "FR": 1, "": 1}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var b struct {
			Results []struct {
				Value    string
				Visitors int
			}
		}
		get(t, r.URL, "/api/v1/analytics/breakdown?period=day&property=country&date="+at.Format(time.DateOnly), r.Token, &b)
		got := map[string]int{}
		for _, x := range b.Results {
			got[x.Value] = x.Visitors
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("countries %v, want %v", got, want)
		}
		return nil
	})
	// The address itself is not stored (collector.store_ip is off).
	var evs struct {
		Events []struct{ Event struct{ Data map[string]any } }
	}
	get(t, r.URL, "/api/v1/events?subject=ev.track.page&limit=10", r.Token, &evs)
	for _, e := range evs.Events {
		ctx, _ := e.Event.Data["context"].(map[string]any)
		if ip, ok := ctx["ip"]; ok && ip != "81.2.69.142" {
			t.Fatalf("an address was stored: %v", ctx)
		}
	}
}

// TestSharedLink: a shared link reads one site's reports without an
// account, cannot reach other sites or the other routes, and stops working
// when revoked; only analytics:write makes one.
func TestSharedLink(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.Collector.WriteKeys = config.Strings{key} })
	at := time.Now().UTC().Add(-time.Hour)
	send(t, r.URL, "/v1/batch", "",
		page("s1", "/", "", at), page("s2", "/", "", at),
		strings.ReplaceAll(page("o1", "/secret", "", at), "shop.example", "other.example"))
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var st struct{ Events int }
		get(t, r.URL, "/api/v1/analytics/status", r.Token, &st)
		if st.Events != 3 {
			return fmt.Errorf("%d events", st.Events)
		}
		return nil
	})
	create := func(token, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", r.URL+"/api/v1/analytics/shares", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := testutil.Anonymous.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, out := create(r.Token, `{"name":"board","site":"shop example"}`); code != 400 || out["field"] != "site" {
		t.Fatalf("bad site: %d %v", code, out)
	}
	code, out := create(r.Token, `{"name":"board","site":"Shop.Example"}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, out)
	}
	link := out["link"].(string)
	anon := func(path string) (int, string) {
		resp, err := testutil.Anonymous.Get(r.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The link reads shop.example only, whatever site= or filters= say.
	// date= names the events' day: an hour ago is yesterday between 00:00 and 01:00.
	day := "period=day&date=" + at.Format(time.DateOnly)
	for _, q := range []string{day, day + "&site=other.example", day + "&filters=hostname%3D%3Dother.example"} {
		code, body := anon(link + "/api/aggregate?" + q)
		var a aggAnswer
		json.Unmarshal([]byte(body), &a)
		want := 2
		if strings.Contains(q, "filters") {
			want = 0
		}
		if code != 200 || a.Results.Visitors != want {
			t.Fatalf("%s: %d %s", q, code, body)
		}
	}
	if code, body := anon(link); code != 200 || !strings.Contains(body, `data-shared="1"`) || !strings.Contains(body, "shop.example") {
		t.Fatalf("the shared page: %d", code)
	}
	if code, body := anon(link + "/api/breakdown?" + day + "&property=page"); code != 200 || strings.Contains(body, "/secret") {
		t.Fatalf("breakdown through the link: %d %s", code, body)
	}
	for _, p := range []string{link + "/api/values?dimension=hostname", link + "/api/status", link + "/api/shares"} {
		if code, _ := anon(p); code != 404 {
			t.Fatalf("%s: %d, want 404", p, code)
		}
	}
	// A changed secret, or a link to another share id, is not a link.
	bad := link[:len(link)-1] + map[bool]string{true: "0", false: "1"}[!strings.HasSuffix(link, "0")]
	if code, _ := anon(bad + "/api/aggregate?period=day"); code != 404 {
		t.Fatalf("altered link: %d", code)
	}
	// A viewer cannot make links.
	var tok struct{ Token string }
	req, _ := http.NewRequest("POST", r.URL+"/api/v1/tokens", strings.NewReader(`{"name":"v","role":"viewer"}`))
	req.Header.Set("Authorization", "Bearer "+r.Token)
	resp, err := testutil.Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if code, _ := create(tok.Token, `{"name":"mine"}`); code != 403 {
		t.Fatalf("viewer made a share: %d", code)
	}
	// Revoked: the link is dead at once.
	id := out["share"].(map[string]any)["id"].(string)
	req, _ = http.NewRequest("DELETE", r.URL+"/api/v1/analytics/shares/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+r.Token)
	resp, err = testutil.Anonymous.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("revoke: %v %v", err, resp)
	}
	resp.Body.Close()
	if code, _ := anon(link + "/api/aggregate?period=day"); code != 404 {
		t.Fatalf("revoked link still works: %d", code)
	}
	if code, _ := anon(link); code != 404 {
		t.Fatalf("revoked link's page: %d", code)
	}
}
