package testutil

import (
	"net/http"
	"strings"
	"sync"
)

// Tests of features other than identity talk to the API as an admin
// without saying so: Authorize registers a server's admin token, and
// http.DefaultTransport adds it to requests for that server that carry no
// credentials of their own. Tests of authentication itself use Anonymous,
// a client that adds nothing.

var (
	authMu     sync.RWMutex
	authTokens = map[string]string{} // base URL -> token
	authOnce   sync.Once
)

// Anonymous is an HTTP client that never adds credentials.
var Anonymous = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

type authTransport struct{ next http.RoundTripper }

func (a authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" && r.Header.Get("Cookie") == "" {
		authMu.RLock()
		tok := authTokens[r.URL.Scheme+"://"+r.URL.Host]
		authMu.RUnlock()
		if tok != "" {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	return a.next.RoundTrip(r)
}

// Authorize makes the default HTTP client send token to base (http://host:port).
func Authorize(base, token string) {
	authOnce.Do(func() {
		// Anonymous was cloned from the original transport above, before this.
		http.DefaultTransport = authTransport{next: http.DefaultTransport}
	})
	authMu.Lock()
	authTokens[strings.TrimRight(base, "/")] = token
	authMu.Unlock()
}
