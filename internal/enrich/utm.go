package enrich

import (
	"maps"
	"net/url"
	"slices"
	"strings"
)

// UTM copies campaign parameters and ad click ids from the page URL's query.
//
// It writes, under into, campaign {"name", "source", "medium", "term",
// "content", "id"} from utm_campaign, utm_source, utm_medium, utm_term,
// utm_content and utm_id, and click_ids {"gclid", "fbclid", "msclkid",
// "ttclid", "li_fat_id", "twclid"}, each with only the keys the URL carries
// with a non-empty value. Parameter names match case-insensitively; the
// first value of a repeated parameter wins.
//
// When the URL has any utm_ parameter, campaign is replaced as a whole: a
// client-set campaign is kept only when the URL has none, and never mixed
// with the URL's (a stale client value would misattribute the visit).
// click_ids follows the same rule. A missing or non-string URL, or one
// without these parameters, leaves the event unchanged.
type UTM struct {
	urlField, campaign, clickIDs path
}

var _ Enricher = (*UTM)(nil)

func buildUTM(o Options) (Enricher, error) {
	var u UTM
	var err error
	if u.urlField, err = optPath(o, "url_field"); err != nil {
		return nil, err
	}
	into, err := optPath(o, "into")
	if err != nil {
		return nil, err
	}
	u.campaign = append(into[:len(into):len(into)], "campaign")
	u.clickIDs = append(into[:len(into):len(into)], "click_ids")
	return &u, nil
}

// Each pair is (query parameter, output key).
var (
	campaignParams = [][2]string{
		{"utm_campaign", "name"}, {"utm_source", "source"}, {"utm_medium", "medium"},
		{"utm_term", "term"}, {"utm_content", "content"}, {"utm_id", "id"},
	}
	clickIDParams = [][2]string{
		{"gclid", "gclid"}, {"fbclid", "fbclid"}, {"msclkid", "msclkid"},
		{"ttclid", "ttclid"}, {"li_fat_id", "li_fat_id"}, {"twclid", "twclid"},
	}
)

// Enrich implements Enricher. The only error is an into path blocked by a
// non-object value.
func (u *UTM) Enrich(obj map[string]any) error {
	raw, ok := u.urlField.getString(obj)
	if !ok {
		return nil
	}
	q := queryParams(raw)
	if len(q) == 0 {
		return nil
	}
	if m := pick(q, campaignParams); m != nil {
		if err := u.campaign.set(obj, m); err != nil {
			return err
		}
	}
	if m := pick(q, clickIDParams); m != nil {
		return u.clickIDs.set(obj, m)
	}
	return nil
}

func pick(q url.Values, params [][2]string) map[string]any {
	var m map[string]any
	for _, p := range params {
		v := strings.TrimSpace(q.Get(p[0]))
		if v == "" {
			continue
		}
		if m == nil {
			m = make(map[string]any, len(params))
		}
		m[p[1]] = v
	}
	return m
}

// queryParams returns the query of a URL with lower-cased names. It reads
// what it can rather than fail: tracking URLs are hand-built and often carry
// one bad escape (a literal %) among good parameters, and url.ParseQuery
// keeps the valid pairs while reporting the first bad one.
func queryParams(raw string) url.Values {
	raw, _, _ = strings.Cut(raw, "#")
	_, query, ok := strings.Cut(raw, "?")
	if !ok || query == "" {
		return nil
	}
	q, _ := url.ParseQuery(query)
	if !hasUpper(query) {
		return q
	}
	// Names that differ only in case (utm_source, UTM_Source) collapse to
	// one; the lower-case spelling wins, then the first in sorted order, so
	// the result does not depend on map iteration order.
	out := make(url.Values, len(q))
	for _, k := range slices.Sorted(maps.Keys(q)) {
		lk := strings.ToLower(k)
		if _, ok := out[lk]; ok {
			continue
		}
		if vs, ok := q[lk]; ok {
			out[lk] = vs
		} else {
			out[lk] = q[k]
		}
	}
	return out
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
