package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/reply"
)

// The proxy fronts other hosts and serves the login pages there under a
// prefix (/_ops); these are its hooks.

type prefixKey struct{}

// WithPrefix marks a request as served under prefix, so that the login
// form and its links point at the prefixed paths.
func WithPrefix(ctx context.Context, prefix string) context.Context {
	return context.WithValue(ctx, prefixKey{}, prefix)
}

func prefixOf(r *http.Request) string {
	p, _ := r.Context().Value(prefixKey{}).(string)
	return p
}

type edgeKey struct{}

// edge reports whether r reached Ops through the proxy (Identify, or a
// first-party path under a prefix): its session is the proxy's, cookie
// ops_edge.
func edge(r *http.Request) bool {
	return prefixOf(r) != "" || r.Context().Value(edgeKey{}) != nil
}

// IsToken reports whether a credential has the shape of an Ops API token
// (ops_<id>_<secret>), so that the proxy can keep it from upstreams.
func IsToken(s string) bool { return strings.HasPrefix(s, "ops_") }

// ErrUnauthenticated is returned by Identify when the request carries no
// credentials.
var ErrUnauthenticated = errNoCredentials

// Identify authenticates a request for the proxy and resolves its roles.
// Errors: ErrUnauthenticated, ErrInvalid (refused credentials),
// ErrUnavailable (cannot check now).
func (m *Module) Identify(w http.ResponseWriter, r *http.Request) (*Identity, error) {
	req, err := m.identify(w, r.WithContext(context.WithValue(r.Context(), edgeKey{}, true)))
	if err != nil {
		return nil, err
	}
	return req.id, nil
}

// Unauthenticated answers a request Identify refused: 503 when the check
// could not be made; a browser page load goes to prefix+/login (or is
// offered Negotiate with the form as body); other clients get 401.
func (m *Module) Unauthenticated(w http.ResponseWriter, r *http.Request, prefix string, err error) {
	if errors.Is(err, ErrUnavailable) {
		w.Header().Set("Retry-After", "5")
		reply.Error(w, http.StatusServiceUnavailable, "", "cannot check credentials now")
		return
	}
	if m.kerberos != nil {
		w.Header().Add("WWW-Authenticate", "Negotiate")
	}
	w.Header().Add("WWW-Authenticate", `Bearer realm="ops"`)
	if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
		if m.kerberos != nil {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			m.loginPage(w, r.WithContext(WithPrefix(r.Context(), prefix)), r.URL.RequestURI(), "")
			return
		}
		http.Redirect(w, r, prefix+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	reply.Error(w, http.StatusUnauthorized, "authorization", "authentication required")
}

// Negotiates reports whether Kerberos (SPNEGO) is configured, so servers
// that challenge for credentials themselves (the forward proxy) offer it.
func (m *Module) Negotiates() bool { return m.kerberos != nil }

// Locked reports a POLICY lock on the user (for the proxy's checks of
// already signed-in users).
func (m *Module) Locked(ctx context.Context, user string) (string, error) {
	return m.locked(ctx, user, netipZero)
}

// CheckPassword checks a user name and password as the sign-in form does,
// for a server that takes passwords itself (the forward proxy's Basic
// auth): the throttle per user name and per address first, then POLICY
// locks, then the providers in order. A refusal counts against the
// throttle and is audited as ev.auth.failed (via: what asked), as the
// form's are. ErrInvalid, ErrLocked (throttled or locked) or
// ErrUnavailable.
func (m *Module) CheckPassword(ctx context.Context, user, password string, ip netip.Addr, via string) (*Identity, error) {
	anon := ""
	if ip.IsValid() {
		anon = clientip.Anonymize(ip).String()
	}
	failed := func(reason string) {
		m.emit(ctx, "auth.failed", map[string]any{"user": user, "reason": reason, "ip": anon, "via": via})
	}
	ukey, akey := "u:"+userKey(user), addrKey(ip)
	now := time.Now()
	if no, _ := m.userThrottle.refused(ukey, now); no {
		failed("throttled")
		return nil, fmt.Errorf("%w: too many refused sign-ins for this user", ErrLocked)
	}
	if no, _ := m.addrThrottle.refused(akey, now); no && akey != "" {
		failed("throttled")
		return nil, fmt.Errorf("%w: too many refused sign-ins from this address", ErrLocked)
	}
	why, err := m.locked(ctx, user, ip)
	if err != nil {
		return nil, err
	}
	if why != "" {
		failed("locked")
		return nil, fmt.Errorf("%w: %s", ErrLocked, why)
	}
	id, err := m.login(ctx, user, password)
	switch {
	case errors.Is(err, ErrInvalid):
		failed("invalid_credentials")
		m.userThrottle.fail(ukey, time.Now())
		if akey != "" {
			m.addrThrottle.fail(akey, time.Now())
		}
		return nil, err
	case err != nil:
		failed("provider_unavailable")
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	m.userThrottle.succeed(ukey)
	m.resolve(id)
	return id, nil
}
