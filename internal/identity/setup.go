package identity

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/reply"
)

// First run in a browser. A fresh Ops has an admin token (for the CLI) and
// no user, so no browser can sign in. While nobody can, Run makes a
// one-time setup code, kept only in memory, and the UI module prints the
// link /setup?code=... in the start-up log (as Jupyter prints its token
// link): whoever can read the log of this process can create the first
// admin user with it, once. The code is 128 random bits, compared in
// constant time; it dies with the first user, and a restart makes a new one.
type setup struct {
	mu   sync.Mutex
	code string
}

// SetupCode is the one-time setup code, "" when nobody needs one.
func (m *Module) SetupCode() string {
	m.setup.mu.Lock()
	defer m.setup.mu.Unlock()
	return m.setup.code
}

// prepareSetup makes the code when no user exists and no directory grant
// could let anyone in.
func (m *Module) prepareSetup(ctx context.Context) error {
	if len(m.cfg.Grants) > 0 {
		return nil
	}
	n, err := m.local.count(ctx)
	if err != nil || n > 0 {
		return err
	}
	m.setup.mu.Lock()
	m.setup.code = randHex(16)
	m.setup.mu.Unlock()
	return nil
}

var setupTmpl = template.Must(template.New("setup").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Set up · Ops</title>
<style>body{font:16px system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;margin:0;background:#f6f7f9;color:#1b1f24}
form,div.box{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;min-width:18rem;max-width:26rem}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1.2rem;width:100%;padding:.6rem}.err{color:#b00020}
@media (prefers-color-scheme:dark){body{background:#111418;color:#e6e8eb}form,div.box{background:#1c2128}}</style></head>
<body>{{if .Form}}<form method="post" action="/api/v1/setup"><h1>Welcome to Ops</h1>
<p>Create the first administrator. This link works once.</p>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
<input type="hidden" name="code" value="{{.Code}}">
<label for="name">User name</label><input id="name" name="name" autocomplete="username" required autofocus value="{{.Name}}">
<label for="password">Password (8 to 72 characters)</label><input id="password" name="password" type="password" autocomplete="new-password" minlength="8" maxlength="72" required>
<label for="confirm">Password again</label><input id="confirm" name="confirm" type="password" autocomplete="new-password" minlength="8" maxlength="72" required>
<button type="submit">Create administrator</button>
</form>{{else}}<div class="box" role="alert"><h1>Ops</h1><p>{{.Error}}</p><p><a href="/login">Sign in</a></p></div>{{end}}
</body></html>
`))

func (m *Module) setupPage(w http.ResponseWriter, code int, data map[string]any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer") // the code is in the URL
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(code)
	_ = setupTmpl.Execute(w, data)
}

// checkCode reports whether presented is the live setup code; the answer
// for a refusal is the status and message to show.
func (m *Module) checkCode(presented string) (int, string) {
	m.setup.mu.Lock()
	live := m.setup.code
	m.setup.mu.Unlock()
	switch {
	case live == "":
		return http.StatusGone, "Set-up is done: an account exists already. Sign in, or ask an administrator for one."
	case subtle.ConstantTimeCompare([]byte(presented), []byte(live)) != 1:
		return http.StatusForbidden, "This set-up link is not valid (Ops makes a new one at each start while no user exists: see its log)."
	}
	return 0, ""
}

func (m *Module) getSetup(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	if status, msg := m.checkCode(code); status != 0 {
		m.setupPage(w, status, map[string]any{"Error": msg})
		return
	}
	m.setupPage(w, http.StatusOK, map[string]any{"Form": true, "Code": code})
}

// postSetup creates the first admin user and signs the browser in.
func (m *Module) postSetup(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	form := ct == "application/x-www-form-urlencoded"
	var in struct {
		Code     string `json:"code"`
		Name     string `json:"name"`
		Password string `json:"password"`
		Confirm  string `json:"confirm"`
	}
	fail := func(status int, field, msg string) {
		if form {
			data := map[string]any{"Error": msg}
			if status == http.StatusBadRequest || status == http.StatusConflict {
				data = map[string]any{"Form": true, "Code": in.Code, "Name": in.Name, "Error": msg}
			}
			m.setupPage(w, status, data)
			return
		}
		reply.Error(w, status, field, msg)
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			fail(http.StatusForbidden, "Origin", "set-up from another origin refused")
			return
		}
	}
	switch ct {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			fail(http.StatusBadRequest, "body", "bad form: "+err.Error())
			return
		}
		in.Code, in.Name, in.Password, in.Confirm = r.PostForm.Get("code"), r.PostForm.Get("name"), r.PostForm.Get("password"), r.PostForm.Get("confirm")
	case "application/json":
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			fail(http.StatusBadRequest, "body", "want JSON {\"code\", \"name\", \"password\"}: "+err.Error())
			return
		}
		if in.Confirm == "" {
			in.Confirm = in.Password
		}
	default:
		fail(http.StatusUnsupportedMediaType, "Content-Type", "want application/json or application/x-www-form-urlencoded, got "+ct)
		return
	}
	// One set-up at a time: two browsers racing the same link make one
	// admin, not two.
	m.setup.mu.Lock()
	defer m.setup.mu.Unlock()
	live := m.setup.code
	if live == "" {
		fail(http.StatusGone, "code", "set-up is done: an account exists already")
		return
	}
	if subtle.ConstantTimeCompare([]byte(in.Code), []byte(live)) != 1 {
		fail(http.StatusForbidden, "code", "this set-up code is not valid (see the start-up log for the link)")
		return
	}
	switch {
	case !userNameRE.MatchString(in.Name):
		fail(http.StatusBadRequest, "name", "want 1 to 64 letters, digits, . _ - (starting with a letter or digit)")
		return
	case in.Password != in.Confirm:
		fail(http.StatusBadRequest, "confirm", "the two passwords differ")
		return
	}
	hash, err := HashPassword(in.Password)
	if err != nil {
		fail(http.StatusBadRequest, "password", err.Error())
		return
	}
	now := time.Now().UTC()
	b, _ := json.Marshal(StoredUser{Name: in.Name, PasswordHash: hash, Roles: []string{"admin"}, Created: now, Updated: now})
	if _, err := m.local.kv.Create(r.Context(), in.Name, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			fail(http.StatusConflict, "name", "user exists")
			return
		}
		fail(http.StatusServiceUnavailable, "", "cannot store the user now: "+err.Error())
		return
	}
	m.setup.code = ""
	m.log.Info("first admin user created through the set-up link", "user", in.Name)
	m.emit(r.Context(), "auth.user_added", map[string]any{"user": in.Name, "roles": []string{"admin"}, "by": "setup"})
	id := &Identity{User: in.Name, Name: in.Name, Roles: []string{"admin"}, Provider: "local"}
	sess := m.startSession(w, r, id, "setup")
	if form {
		if sess == nil {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	out := map[string]any{"name": in.Name, "roles": id.Roles}
	if sess != nil {
		out["csrf_token"] = sess.CSRF
	}
	reply.JSON(w, http.StatusCreated, out)
}

// CSRF is the CSRF token of the session Require found for ctx, "" for
// other credentials (tokens need none).
func CSRF(ctx context.Context) string {
	if s, ok := ctx.Value(sessKey{}).(*Session); ok {
		return s.CSRF
	}
	return ""
}
