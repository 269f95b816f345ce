package enrich

import (
	"strings"

	useragent "github.com/medama-io/go-useragent"
	"github.com/medama-io/go-useragent/agents"
)

// UserAgent parses a User-Agent string into browser, version, OS, device
// class and a bot flag.
//
// It writes {"browser", "browser_version", "os", "device", "bot"} where
// device is one of desktop, mobile, tablet, tv, bot or unknown, and browser
// and os are "" when the parser does not recognise them. A missing, non-string
// or blank user agent leaves the event unchanged.
type UserAgent struct {
	field, into path
	parser      *useragent.Parser
}

var _ Enricher = (*UserAgent)(nil)

func buildUserAgent(o Options) (Enricher, error) {
	field, err := optPath(o, "field")
	if err != nil {
		return nil, err
	}
	into, err := optPath(o, "into")
	if err != nil {
		return nil, err
	}
	// NewParser builds its trie once per process (sync.Once) and returns the
	// same *Parser; Parse only reads the trie and returns a value, so one
	// parser is shared by every enricher and goroutine. (The library does not
	// document concurrency; this was checked against v1.2.5's source.)
	return &UserAgent{field: field, into: into, parser: useragent.NewParser()}, nil
}

// Enrich implements Enricher. The only error is an into path blocked by a
// non-object value.
func (u *UserAgent) Enrich(obj map[string]any) error {
	s, ok := u.field.getString(obj)
	if !ok || strings.TrimSpace(s) == "" {
		return nil
	}
	a := u.parser.Parse(s)
	return u.into.set(obj, map[string]any{
		"browser":         string(a.Browser()),
		"browser_version": a.BrowserVersion(),
		"os":              string(a.OS()),
		"device":          deviceClass(a, s),
		"bot":             a.IsBot(),
	})
}

func deviceClass(a useragent.UserAgent, s string) string {
	switch a.Device() {
	case agents.DeviceBot:
		return "bot"
	case agents.DeviceTV:
		return "tv"
	case agents.DeviceTablet:
		return "tablet"
	case agents.DeviceMobile:
		// The parser calls every Android device mobile. Android phones put a
		// "Mobile" token in the UA and tablets leave it out (Google's own
		// guidance for telling them apart; Firefox writes "Tablet" instead),
		// so an Android UA without it is a tablet.
		if a.OS() == agents.OSAndroid && !strings.Contains(s, "Mobile") {
			return "tablet"
		}
		return "mobile"
	case agents.DeviceDesktop:
		return "desktop"
	default:
		return "unknown"
	}
}
