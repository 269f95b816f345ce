package enrich

import "testing"

func TestUTM(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		in   string // data
		want string // data after
	}{
		{"all campaign keys", nil,
			`{"context":{"page":{"url":"https://a.com/?utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_term=ops&utm_content=hero&utm_id=c42"}}}`,
			`{"context":{"page":{"url":"https://a.com/?utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_term=ops&utm_content=hero&utm_id=c42"},
			  "campaign":{"name":"spring","source":"newsletter","medium":"email","term":"ops","content":"hero","id":"c42"}}}`},
		{"only present keys, click ids", nil,
			`{"context":{"page":{"url":"https://a.com/p?utm_source=google&gclid=EAIa1&fbclid=IwAR2&msclkid=m3&ttclid=t4&li_fat_id=l5&twclid=w6&other=1"}}}`,
			`{"context":{"page":{"url":"https://a.com/p?utm_source=google&gclid=EAIa1&fbclid=IwAR2&msclkid=m3&ttclid=t4&li_fat_id=l5&twclid=w6&other=1"},
			  "campaign":{"source":"google"},
			  "click_ids":{"gclid":"EAIa1","fbclid":"IwAR2","msclkid":"m3","ttclid":"t4","li_fat_id":"l5","twclid":"w6"}}}`},
		{"click id alone keeps client campaign", nil,
			`{"context":{"campaign":{"name":"client"},"page":{"url":"https://a.com/?gclid=g1"}}}`,
			`{"context":{"campaign":{"name":"client"},"page":{"url":"https://a.com/?gclid=g1"},"click_ids":{"gclid":"g1"}}}`},
		{"URL campaign replaces client campaign", nil,
			`{"context":{"campaign":{"name":"client","term":"stale"},"page":{"url":"https://a.com/?utm_campaign=url"}}}`,
			`{"context":{"campaign":{"name":"url"},"page":{"url":"https://a.com/?utm_campaign=url"}}}`},
		{"no parameters leaves client campaign", nil,
			`{"context":{"campaign":{"name":"client"},"page":{"url":"https://a.com/?q=1"}}}`,
			`{"context":{"campaign":{"name":"client"},"page":{"url":"https://a.com/?q=1"}}}`},
		{"decoded, case-insensitive names, first value, empties skipped", nil,
			`{"context":{"page":{"url":"https://a.com/?UTM_Campaign=spring%20sale&utm_source=a&utm_source=b&utm_medium=&utm_term=+"}}}`,
			`{"context":{"page":{"url":"https://a.com/?UTM_Campaign=spring%20sale&utm_source=a&utm_source=b&utm_medium=&utm_term=+"},
			  "campaign":{"name":"spring sale","source":"a"}}}`},
		{"lower-case spelling wins", nil,
			`{"context":{"page":{"url":"https://a.com/?UTM_SOURCE=upper&utm_source=lower"}}}`,
			`{"context":{"page":{"url":"https://a.com/?UTM_SOURCE=upper&utm_source=lower"},"campaign":{"source":"lower"}}}`},
		{"bad escape keeps the good pairs", nil,
			`{"context":{"page":{"url":"https://a.com/?utm_source=x&utm_term=100%&utm_medium=cpc"}}}`,
			`{"context":{"page":{"url":"https://a.com/?utm_source=x&utm_term=100%&utm_medium=cpc"},"campaign":{"source":"x","medium":"cpc"}}}`},
		{"fragment is not query", nil,
			`{"context":{"page":{"url":"https://a.com/#x?utm_source=frag"}}}`,
			`{"context":{"page":{"url":"https://a.com/#x?utm_source=frag"}}}`},
		{"no URL", nil, `{"context":{}}`, `{"context":{}}`},
		{"URL not a string", nil, `{"context":{"page":{"url":7}}}`, `{"context":{"page":{"url":7}}}`},
		{"custom url_field and into", Options{"url_field": "data.href", "into": "data.attribution"},
			`{"href":"/landing?utm_source=x&twclid=t"}`,
			`{"href":"/landing?utm_source=x&twclid=t","attribution":{"campaign":{"source":"x"},"click_ids":{"twclid":"t"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decode(t, `{"data":`+tt.in+`}`)
			if err := mustNew(t, "utm", tt.opts).Enrich(obj); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, obj, `{"data":`+tt.want+`}`)
		})
	}
}
