package enrich

import (
	"strings"

	useragent "github.com/medama-io/go-useragent"
)

// The enrichers' decisions, for modules that classify events without
// running a processor (analytics).

// Client is what a User-Agent says of the client.
type Client struct {
	Browser, OS string
	// Device is desktop, mobile, tablet, tv, bot or unknown.
	Device string
	Bot    bool
}

// ParseUserAgent classifies a User-Agent string as the useragent enricher
// does; a blank one is the zero Client.
func ParseUserAgent(ua string) Client {
	if strings.TrimSpace(ua) == "" {
		return Client{}
	}
	a := useragent.NewParser().Parse(ua)
	return Client{Browser: string(a.Browser()), OS: string(a.OS()), Device: deviceClass(a, ua), Bot: a.IsBot()}
}

// Source names where a visit came from, as the referrer enricher
// classifies it: class is direct, internal, search, social, email or
// other; domain the referrer's host without www.; name the known site's
// name (Google, Reddit, ...) or "".
func Source(referrer, pageURL string) (class, domain, name string) {
	c := classifyReferrer(referrer, pageURL)
	return c.class, c.domain, c.name
}
