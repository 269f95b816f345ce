package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/reply"
)

// Handle is how a module mounts a route with the permission it needs.
type Handle func(pattern, perm string, h http.Handler)

// Mount registers the identity routes.
func (m *Module) Mount(h Handle) {
	h("GET /login", Public, http.HandlerFunc(m.getLogin))
	h("GET /login/sso", Public, http.HandlerFunc(m.sso))
	h("GET /setup", Public, http.HandlerFunc(m.getSetup))
	h("POST /api/v1/setup", Public, http.HandlerFunc(m.postSetup))
	h("POST /api/v1/login", Public, http.HandlerFunc(m.postLogin))
	h("POST /api/v1/logout", Authenticated, http.HandlerFunc(m.logout))
	h("GET /api/v1/me", Authenticated, http.HandlerFunc(m.me))
	h("GET /api/v1/roles", "users:read", http.HandlerFunc(m.listRoles))
	h("GET /api/v1/users", "users:read", http.HandlerFunc(m.listUsers))
	h("POST /api/v1/users", "users:write", http.HandlerFunc(m.addUser))
	h("PUT /api/v1/users/{name}", "users:write", http.HandlerFunc(m.updateUser))
	h("DELETE /api/v1/users/{name}", "users:write", http.HandlerFunc(m.removeUser))
	h("GET /api/v1/tokens", "tokens:read", http.HandlerFunc(m.listTokens))
	h("POST /api/v1/tokens", "tokens:write", http.HandlerFunc(m.createToken))
	h("DELETE /api/v1/tokens/{id}", "tokens:write", http.HandlerFunc(m.revokeToken))
}

// Credentials is the body of POST /api/v1/login (JSON or form).
type Credentials struct {
	User     string `json:"user"`
	Username string `json:"username"` // accepted as an alias of user
	Password string `json:"password"`
	Next     string `json:"next"`
}

// ParseCredentials reads a login body: JSON, or a urlencoded form. Errors
// name the field.
func ParseCredentials(r *http.Request) (Credentials, *reply.ErrorBody) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var c Credentials
	switch ct {
	case "application/json", "":
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			return c, &reply.ErrorBody{Field: "body", Error: "want JSON {\"user\": ..., \"password\": ...}: " + err.Error()}
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return c, &reply.ErrorBody{Field: "body", Error: "bad form: " + err.Error()}
		}
		c = Credentials{User: r.PostForm.Get("user"), Username: r.PostForm.Get("username"), Password: r.PostForm.Get("password"), Next: r.PostForm.Get("next")}
	default:
		return c, &reply.ErrorBody{Field: "Content-Type", Error: "want application/json or application/x-www-form-urlencoded, got " + ct}
	}
	if c.User == "" {
		c.User = c.Username
	}
	switch {
	case c.User == "":
		return c, &reply.ErrorBody{Field: "user", Error: "required"}
	case len(c.User) > 256:
		return c, &reply.ErrorBody{Field: "user", Error: "longer than 256 bytes"}
	case c.Password == "":
		return c, &reply.ErrorBody{Field: "password", Error: "required"}
	case len(c.Password) > 1024:
		return c, &reply.ErrorBody{Field: "password", Error: "longer than 1024 bytes"}
	}
	c.Next = safeNext(c.Next)
	return c, nil
}

// safeNext keeps only same-site paths, so a login link cannot send the user
// elsewhere afterwards (open redirect).
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, `\`) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}

func (m *Module) postLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	form := strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
	fail := func(code int, field, msg string, next string) {
		if form {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(code)
			m.loginPage(w, r, next, msg)
			return
		}
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		reply.Error(w, code, field, msg)
	}
	// Login CSRF: a form on another site must not sign the browser in.
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			fail(http.StatusForbidden, "Origin", "login from another origin refused", "/")
			return
		}
	}
	c, bad := ParseCredentials(r)
	if bad != nil {
		fail(http.StatusBadRequest, bad.Field, bad.Error, c.Next)
		return
	}
	ip := m.ClientIP(r)
	failed := func(reason string) uint64 {
		return m.emit(r.Context(), "auth.failed", map[string]any{"user": c.User, "reason": reason, "ip": m.anonIP(r), "user_agent": r.UserAgent()})
	}
	// One attempt at a time per client address and per user name
	// (throttle.go): the throttle and any POLICY lock the last refusal
	// caused are in force before this one is looked at.
	ukey, akey := "u:"+userKey(c.User), addrKey(ip)
	alock := ""
	if akey != "" {
		alock = "a:" + akey
	}
	unlock, err := m.attempts.lock(r.Context(), alock, ukey)
	if err != nil {
		return // the client went away while waiting
	}
	defer unlock()
	now := time.Now()
	if no, wait := m.userThrottle.refused(ukey, now); no {
		m.throttled(w, r, failed, fail, c.Next, "user", "too many refused sign-ins for this user", wait)
		return
	}
	if no, wait := m.addrThrottle.refused(akey, now); no && akey != "" {
		m.throttled(w, r, failed, fail, c.Next, "", "too many refused sign-ins from your address", wait)
		return
	}
	why, err := m.locked(r.Context(), c.User, ip)
	if err != nil {
		fail(http.StatusServiceUnavailable, "", err.Error(), c.Next)
		return
	}
	if why != "" {
		failed("locked")
		fail(http.StatusForbidden, "user", "sign-in refused: "+why, c.Next)
		return
	}
	id, err := m.login(r.Context(), c.User, c.Password)
	switch {
	case errors.Is(err, ErrInvalid):
		seq := failed("invalid_credentials")
		m.userThrottle.fail(ukey, time.Now())
		if akey != "" {
			m.addrThrottle.fail(akey, time.Now())
		}
		m.settle(r.Context(), seq)
		fail(http.StatusUnauthorized, "password", "invalid user or password", c.Next)
		return
	case err != nil:
		failed("provider_unavailable")
		fail(http.StatusServiceUnavailable, "", "cannot check the password now (identity provider unavailable); try again shortly", c.Next)
		return
	}
	m.userThrottle.succeed(ukey)
	// A new session id at every login: a session id planted before login
	// (fixation) never becomes an authenticated one.
	name := cookieFor(edge(r))
	if old, err := r.Cookie(name); err == nil {
		if sid, ok := m.sessions.open(old.Value, name); ok {
			_ = m.sessions.end(r.Context(), sid)
		}
	}
	sess := m.startSession(w, r, id, "password")
	if sess == nil {
		fail(http.StatusServiceUnavailable, "", "cannot store the session now; try again shortly", c.Next)
		return
	}
	if form {
		http.Redirect(w, r, c.Next, http.StatusSeeOther)
		return
	}
	m.resolve(id)
	reply.JSON(w, http.StatusOK, map[string]any{
		"user": id.User, "name": id.Name, "email": id.Email, "groups": id.Groups, "roles": id.Roles, "provider": id.Provider,
		"csrf_token": sess.CSRF, "expires": sess.Created.Add(m.cfg.Session.Absolute.D()),
	})
}

// throttled refuses a login attempt the throttle holds back: 429 with
// Retry-After, before any password is checked.
func (m *Module) throttled(w http.ResponseWriter, r *http.Request, failed func(string) uint64,
	fail func(int, string, string, string), next, field, msg string, wait time.Duration) {
	failed("throttled")
	m.logins.WithLabelValues("throttle", "refused").Inc()
	secs := int(wait.Seconds()) + 1
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	fail(http.StatusTooManyRequests, field, fmt.Sprintf("%s; try again in %s (identity.lockout)", msg, (time.Duration(secs)*time.Second).String()), next)
}

// settle waits, up to identity.lockout.settle, until the event graph has
// acted on the refusal stored at seq.
func (m *Module) settle(ctx context.Context, seq uint64) {
	if seq == 0 || m.deps.Settle == nil || m.cfg.Lockout.Settle <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Lockout.Settle.D())
	defer cancel()
	m.deps.Settle(ctx, seq)
}

// startSession stores a session for id, sets the cookie and emits
// ev.auth.login; nil means the session could not be stored.
func (m *Module) startSession(w http.ResponseWriter, r *http.Request, id *Identity, method string) *Session {
	sess, cookie, err := m.sessions.create(r.Context(), id, edge(r))
	if err != nil {
		m.log.Error("store session", "err", err)
		return nil
	}
	http.SetCookie(w, m.sessions.cookie(cookieFor(sess.Edge), cookie, m.secure(r), m.cfg.Session.Absolute.D()))
	m.emit(r.Context(), "auth.login", map[string]any{"user": id.User, "provider": id.Provider, "method": method, "ip": m.anonIP(r), "user_agent": r.UserAgent()})
	return sess
}

func (m *Module) logout(w http.ResponseWriter, r *http.Request) {
	id := FromContext(r.Context())
	name := cookieFor(edge(r))
	if c, err := r.Cookie(name); err == nil {
		if sid, ok := m.sessions.open(c.Value, name); ok {
			if err := m.sessions.end(r.Context(), sid); err != nil {
				reply.Error(w, http.StatusServiceUnavailable, "", "cannot end the session now: "+err.Error())
				return
			}
		}
	}
	http.SetCookie(w, m.sessions.cookie(name, "", m.secure(r), -time.Second))
	m.emit(r.Context(), "auth.logout", map[string]any{"user": id.User, "ip": m.anonIP(r)})
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		http.Redirect(w, r, prefixOf(r)+"/login", http.StatusSeeOther)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) me(w http.ResponseWriter, r *http.Request) {
	id := FromContext(r.Context())
	out := map[string]any{"user": id.User, "name": id.Name, "email": id.Email, "groups": id.Groups, "roles": id.Roles, "provider": id.Provider}
	// Require read the session already; a token request has none.
	if s, ok := r.Context().Value(sessKey{}).(*Session); ok {
		out["csrf_token"] = s.CSRF
	}
	reply.JSON(w, http.StatusOK, out)
}

// sso signs a browser in with Kerberos: 401 Negotiate until it sends a
// ticket, then a session and a redirect to next.
func (m *Module) sso(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if m.kerberos == nil {
		http.Redirect(w, r, prefixOf(r)+"/login?next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	id, resp, err := m.kerberos.Verify(r)
	if err != nil {
		if !errors.Is(err, ErrNoTicket) {
			m.emit(r.Context(), "auth.failed", map[string]any{"reason": "bad_ticket", "ip": m.anonIP(r), "user_agent": r.UserAgent()})
		}
		w.Header().Set("WWW-Authenticate", "Negotiate")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		m.loginPage(w, r, next, "")
		return
	}
	if why, err := m.locked(r.Context(), id.User, m.ClientIP(r)); err != nil || why != "" {
		reply.Error(w, http.StatusForbidden, "user", "sign-in refused: "+why)
		return
	}
	if resp != "" {
		w.Header().Set("WWW-Authenticate", "Negotiate "+resp)
	}
	if m.startSession(w, r, id, "negotiate") == nil {
		reply.Error(w, http.StatusServiceUnavailable, "", "cannot store the session now")
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign in · Ops</title>
<style>body{font:16px system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;margin:0;background:#f6f7f9}
form{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;min-width:18rem}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1.2rem;width:100%;padding:.6rem}.err{color:#b00020}</style></head>
<body><form method="post" action="{{.Prefix}}/api/v1/login"><h1>Ops</h1>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
<input type="hidden" name="next" value="{{.Next}}">
<label for="user">User</label><input id="user" name="user" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
{{if .SSO}}<p><a href="{{.Prefix}}/login/sso?next={{.Next}}">Sign in with Windows / Kerberos</a></p>{{end}}
</form></body></html>
`))

func (m *Module) getLogin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	m.loginPage(w, r, safeNext(r.URL.Query().Get("next")), "")
}

func (m *Module) loginPage(w http.ResponseWriter, r *http.Request, next, msg string) {
	// The page must not be framed (clickjacking a login form).
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	_ = loginTmpl.Execute(w, map[string]any{"Next": next, "Error": msg, "SSO": m.kerberos != nil, "Prefix": prefixOf(r)})
}

// actor names who made a request, for audit events.
func actor(ctx context.Context) string {
	if id := FromContext(ctx); id != nil {
		return id.User
	}
	return ""
}

// UserRequest is the body of POST /api/v1/users and PUT /api/v1/users/{name}.
type UserRequest struct {
	Name     string   `json:"name"`
	Password string   `json:"password"`
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
	Roles    []string `json:"roles"`
}

func (m *Module) decodeUser(w http.ResponseWriter, r *http.Request, u *UserRequest) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(u); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", "want JSON {\"name\", \"password\", \"email\", \"groups\", \"roles\"}: "+err.Error())
		return false
	}
	for i, role := range u.Roles {
		if !m.roles.Known(role) {
			reply.Error(w, http.StatusBadRequest, fmt.Sprintf("roles[%d]", i), fmt.Sprintf("unknown role %q (have %s)", role, strings.Join(m.roles.Names(), ", ")))
			return false
		}
	}
	return true
}

func (m *Module) addUser(w http.ResponseWriter, r *http.Request) {
	var u UserRequest
	if !m.decodeUser(w, r, &u) {
		return
	}
	if !userNameRE.MatchString(u.Name) {
		reply.Error(w, http.StatusBadRequest, "name", "want 1 to 64 letters, digits, . _ - (starting with a letter or digit)")
		return
	}
	if _, inConfig := m.local.cfg[u.Name]; inConfig {
		reply.Error(w, http.StatusConflict, "name", fmt.Sprintf("user %q is defined in the config file", u.Name))
		return
	}
	hash, err := HashPassword(u.Password)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "password", err.Error())
		return
	}
	now := time.Now().UTC()
	b, _ := json.Marshal(StoredUser{Name: u.Name, PasswordHash: hash, Email: u.Email, Groups: u.Groups, Roles: u.Roles, Created: now, Updated: now})
	if _, err := m.local.kv.Create(r.Context(), u.Name, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			reply.Error(w, http.StatusConflict, "name", fmt.Sprintf("user %q exists", u.Name))
			return
		}
		m.deps.Bus.WriteError(w, err)
		return
	}
	m.setup.mu.Lock()
	m.setup.code = "" // someone can sign in now: the set-up link is spent
	m.setup.mu.Unlock()
	m.emit(r.Context(), "auth.user_added", map[string]any{"user": u.Name, "roles": u.Roles, "by": actor(r.Context())})
	reply.JSON(w, http.StatusCreated, map[string]any{"name": u.Name, "email": u.Email, "groups": u.Groups, "roles": u.Roles, "created": now})
}

// updateUser changes a stored user's password, email, groups or roles;
// fields left out keep their values.
func (m *Module) updateUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var u UserRequest
	if !m.decodeUser(w, r, &u) {
		return
	}
	if _, inConfig := m.local.cfg[name]; inConfig {
		reply.Error(w, http.StatusConflict, "name", fmt.Sprintf("user %q is defined in the config file; change it there", name))
		return
	}
	e, err := m.local.kv.Get(r.Context(), name)
	if err != nil {
		reply.Error(w, http.StatusNotFound, "name", fmt.Sprintf("no stored user %q", name))
		return
	}
	var su StoredUser
	if err := json.Unmarshal(e.Value(), &su); err != nil {
		reply.Error(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	if u.Password != "" {
		if su.PasswordHash, err = HashPassword(u.Password); err != nil {
			reply.Error(w, http.StatusBadRequest, "password", err.Error())
			return
		}
	}
	if u.Email != "" {
		su.Email = u.Email
	}
	if u.Groups != nil {
		su.Groups = u.Groups
	}
	if u.Roles != nil {
		su.Roles = u.Roles
	}
	su.Updated = time.Now().UTC()
	b, _ := json.Marshal(su)
	if _, err := m.local.kv.Update(r.Context(), name, b, e.Revision()); err != nil {
		reply.Error(w, http.StatusConflict, "name", "changed concurrently; try again")
		return
	}
	m.emit(r.Context(), "auth.user_changed", map[string]any{"user": name, "password_changed": u.Password != "", "roles": su.Roles, "by": actor(r.Context())})
	su.PasswordHash = ""
	reply.JSON(w, http.StatusOK, su)
}

func (m *Module) removeUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, inConfig := m.local.cfg[name]; inConfig {
		reply.Error(w, http.StatusConflict, "name", fmt.Sprintf("user %q is defined in the config file; remove it there", name))
		return
	}
	if !userNameRE.MatchString(name) {
		reply.Error(w, http.StatusNotFound, "name", fmt.Sprintf("no stored user %q", name))
		return
	}
	if _, err := m.local.kv.Get(r.Context(), name); err != nil {
		reply.Error(w, http.StatusNotFound, "name", fmt.Sprintf("no stored user %q", name))
		return
	}
	if err := m.local.kv.Purge(r.Context(), name); err != nil {
		m.deps.Bus.WriteError(w, err)
		return
	}
	m.emit(r.Context(), "auth.user_removed", map[string]any{"user": name, "by": actor(r.Context())})
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) listUsers(w http.ResponseWriter, r *http.Request) {
	us, err := m.local.list(r.Context())
	if err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	if us == nil {
		us = []StoredUser{}
	}
	reply.JSON(w, http.StatusOK, map[string]any{"users": us})
}

func (m *Module) listRoles(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	for _, n := range m.roles.Names() {
		out = append(out, map[string]any{"name": n, "permissions": m.roles.perms[n]})
	}
	reply.JSON(w, http.StatusOK, map[string]any{"roles": out})
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Expires string `json:"expires"` // a duration: 30d, 12h; empty never expires
}

func (m *Module) createToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", "want JSON {\"name\", \"role\", \"expires\"}: "+err.Error())
		return
	}
	if req.Name == "" || len(req.Name) > 64 {
		reply.Error(w, http.StatusBadRequest, "name", "want 1 to 64 characters")
		return
	}
	if !m.roles.Known(req.Role) {
		reply.Error(w, http.StatusBadRequest, "role", fmt.Sprintf("unknown role %q (have %s)", req.Role, strings.Join(m.roles.Names(), ", ")))
		return
	}
	var ttl time.Duration
	if req.Expires != "" {
		d, err := config.ParseDuration(req.Expires)
		if err != nil || d <= 0 {
			reply.Error(w, http.StatusBadRequest, "expires", "want a positive duration such as 12h, 30d or 1w")
			return
		}
		ttl = d
	}
	tok, secret, err := m.tokens.create(r.Context(), req.Name, req.Role, actor(r.Context()), ttl)
	if err != nil {
		m.deps.Bus.WriteError(w, err)
		return
	}
	m.emit(r.Context(), "auth.token_created", map[string]any{"id": tok.ID, "name": tok.Name, "role": tok.Role, "by": tok.CreatedBy})
	reply.JSON(w, http.StatusCreated, map[string]any{"token": secret, "id": tok.ID, "name": tok.Name, "role": tok.Role, "expires": tok.Expires, "created": tok.Created})
}

func (m *Module) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := m.tokens.list(r.Context())
	if err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"tokens": ts})
}

func (m *Module) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ok, err := m.tokens.remove(r.Context(), id)
	if err != nil {
		m.deps.Bus.WriteError(w, err)
		return
	}
	if !ok {
		reply.Error(w, http.StatusNotFound, "id", fmt.Sprintf("no token %q", id))
		return
	}
	m.emit(r.Context(), "auth.token_revoked", map[string]any{"id": id, "by": actor(r.Context())})
	w.WriteHeader(http.StatusNoContent)
}
