// Command count prints how many events with a subject an Ops instance has
// stored, and how many distinct ids they carry, by paging through
// GET /api/v1/events. The streams API counts bus messages, and the proxy
// stores its request events several hundred to a message, so this is the
// way to compare events stored with requests served.
//
//	go run ./bench/proxy/count -api http://127.0.0.1:18093 -token-file data/admin.token
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

var (
	api       = flag.String("api", "http://127.0.0.1:7070", "Ops API base URL")
	tokenFile = flag.String("token-file", "data/admin.token", "file holding an API token with events:read")
	subject   = flag.String("subject", "ev.proxy.request", "subject filter")
)

func main() {
	flag.Parse()
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		fail(err)
	}
	token := strings.TrimSpace(string(tok))
	ids := map[string]struct{}{}
	total := 0
	for since := "1"; ; {
		var page struct {
			Events []struct {
				Event struct {
					ID string `json:"id"`
				} `json:"event"`
			} `json:"events"`
			Next string `json:"next"`
		}
		q := url.Values{"subject": {*subject}, "since": {since}, "limit": {"10000"}}
		if err := get(*api+"/api/v1/events?"+q.Encode(), token, &page); err != nil {
			fail(err)
		}
		if len(page.Events) == 0 {
			break
		}
		for _, e := range page.Events {
			ids[e.Event.ID] = struct{}{}
		}
		total += len(page.Events)
		since = page.Next
	}
	fmt.Println(total, len(ids))
}

func get(u, token string, v any) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "count:", err)
	os.Exit(1)
}
