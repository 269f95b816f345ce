package identity

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/opsgraph/ops/internal/reply"
)

type ctxKey struct{}

// FromContext returns the identity Require established, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}

// request is what authenticate found.
type request struct {
	id     *Identity
	method string   // token, session, negotiate
	sess   *Session // for method session
}

var errNoCredentials = errors.New("no credentials")

// authenticate reads a bearer token (also accepted as the password of Basic
// auth, which is what Grafana's data source sends), a Negotiate ticket, or
// the session cookie, in that order.
func (m *Module) authenticate(w http.ResponseWriter, r *http.Request) (request, error) {
	authz := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(authz, " ")
	switch strings.ToLower(scheme) {
	case "bearer":
		return m.byToken(r.Context(), strings.TrimSpace(cred))
	case "basic":
		if _, pw, ok := r.BasicAuth(); ok && strings.HasPrefix(pw, "ops_") {
			return m.byToken(r.Context(), pw)
		}
		return request{}, fmt.Errorf("%w: Basic auth takes an API token as the password", ErrInvalid)
	case "negotiate":
		if m.kerberos == nil {
			return request{}, fmt.Errorf("%w: Kerberos is not configured", ErrInvalid)
		}
		id, resp, err := m.kerberos.Verify(r)
		if err != nil {
			return request{}, err
		}
		if resp != "" {
			w.Header().Set("WWW-Authenticate", "Negotiate "+resp)
		}
		return request{id: id, method: "negotiate"}, nil
	case "":
	default:
		return request{}, fmt.Errorf("%w: unsupported Authorization scheme %q", ErrInvalid, scheme)
	}
	name := cookieFor(edge(r))
	c, err := r.Cookie(name)
	if err != nil {
		return request{}, errNoCredentials
	}
	sess, err := m.sessions.get(r.Context(), c.Value, name)
	if err != nil {
		return request{}, err
	}
	id := &Identity{User: sess.User, Name: sess.Name, Email: sess.Email, Groups: sess.Groups, Roles: sess.Roles, Provider: sess.Provider}
	return request{id: id, method: "session", sess: sess}, nil
}

func (m *Module) byToken(ctx context.Context, presented string) (request, error) {
	tok, err := m.tokens.verify(ctx, presented)
	if err != nil {
		return request{}, err
	}
	return request{id: &Identity{User: "token:" + tok.Name, Name: tok.Name, Roles: []string{tok.Role}, Provider: "token"}, method: "token"}, nil
}

// Require wraps h so that it runs only for an identity holding perm.
// Public routes pass through. A browser navigation without credentials is
// sent to the login page (or offered Negotiate, when Kerberos is set up);
// API clients get 401 with a JSON body.
func (m *Module) Require(perm string, h http.Handler) http.Handler {
	if perm == Public {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := m.identify(w, r)
		if err != nil {
			m.refuse(w, r, err)
			return
		}
		// Cookies ride along on cross-site requests; a state change made
		// with one must also carry the session's CSRF token, which only
		// pages of this origin can read.
		if req.method == "session" && !safeMethod(r.Method) {
			got := r.Header.Get(csrfHeader)
			if got == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
				got = r.PostFormValue("csrf_token")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(req.sess.CSRF)) != 1 {
				m.refused.WithLabelValues("403").Inc()
				reply.Error(w, http.StatusForbidden, csrfHeader, "missing or wrong CSRF token: send the csrf_token from POST /api/v1/login or GET /api/v1/me in the X-CSRF-Token header")
				return
			}
		}
		if perm != Authenticated && !m.roles.Allows(req.id.Roles, perm) {
			m.refused.WithLabelValues("403").Inc()
			reply.Error(w, http.StatusForbidden, "role", fmt.Sprintf("%s has roles [%s], which do not grant %s (%s)",
				req.id.User, strings.Join(req.id.Roles, ", "), perm, m.needs(perm)))
			return
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, req.id)
		if req.sess != nil {
			ctx = context.WithValue(ctx, sessKey{}, req.sess)
		}
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

type sessKey struct{}

// Allowed reports whether the identity Require established for r holds
// perm.
func (m *Module) Allowed(r *http.Request, perm string) bool {
	id := FromContext(r.Context())
	return id != nil && m.roles.Allows(id.Roles, perm)
}

// identify authenticates r, signs a browser that negotiated in, and
// resolves the identity's roles: the shared first step of Require (the
// API) and Identify (the proxy).
func (m *Module) identify(w http.ResponseWriter, r *http.Request) (request, error) {
	req, err := m.authenticate(w, r)
	if err != nil {
		return req, err
	}
	// Sign a browser in so its later requests need no new ticket; API
	// clients that negotiate on every request get no session to pile up.
	if req.method == "negotiate" && browserNavigation(r) {
		m.startSession(w, r, req.id, "negotiate")
	}
	m.resolve(req.id)
	return req, nil
}

// needs names the built-in roles that grant perm, for error messages.
func (m *Module) needs(perm string) string {
	var ok []string
	for _, role := range []string{"viewer", "editor", "admin"} {
		if m.roles.Allows([]string{role}, perm) {
			ok = append(ok, role)
		}
	}
	return "needs " + strings.Join(ok, " or ")
}

func (m *Module) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrUnavailable) {
		m.refused.WithLabelValues("503").Inc()
		w.Header().Set("Retry-After", "5")
		reply.Error(w, http.StatusServiceUnavailable, "", "cannot check credentials now: "+err.Error())
		return
	}
	m.refused.WithLabelValues("401").Inc()
	challenge := `Bearer realm="ops"`
	if m.kerberos != nil {
		w.Header().Add("WWW-Authenticate", "Negotiate")
	}
	w.Header().Add("WWW-Authenticate", challenge)
	if browserNavigation(r) {
		if m.kerberos != nil {
			// Browsers that cannot negotiate show this body: the form.
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			m.loginPage(w, r, r.URL.RequestURI(), "")
			return
		}
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	msg := "authentication required: send Authorization: Bearer <token> (ops token create) or sign in at /login"
	if !errors.Is(err, errNoCredentials) {
		msg = "credentials refused: " + err.Error()
	}
	reply.Error(w, http.StatusUnauthorized, "authorization", msg)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// browserNavigation is a top-level page load: a GET that prefers HTML.
func browserNavigation(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") &&
		!strings.HasPrefix(r.URL.Path, "/api/")
}
