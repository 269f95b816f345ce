package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/policy"
)

// Deps are what the identity module needs from the app.
type Deps struct {
	Bus      *bus.Bus
	Logger   *slog.Logger
	Registry *prometheus.Registry
	DataDir  string
	// Trusted are proxies whose X-Forwarded-For is believed for client IPs.
	Trusted []string
	// Settle waits until the event graph has acted on the event stored at
	// seq (a POLICY lock from ev.auth.failed), or ctx ends; nil does not
	// wait.
	Settle func(ctx context.Context, seq uint64)
}

// Module authenticates requests and authorises them by role.
type Module struct {
	cfg       config.Identity
	deps      Deps
	log       *slog.Logger
	roles     *Roles
	local     *Local
	providers []PasswordProvider
	kerberos  *Kerberos
	tokens    tokens
	sessions  *sessions
	policy    *policy.Store
	trusted   []netip.Prefix

	logins  *prometheus.CounterVec
	refused *prometheus.CounterVec

	// Password guessing (throttle.go).
	userThrottle, addrThrottle *throttle
	attempts                   keyLocks

	setup setup // the first-run set-up link (setup.go)
}

// New opens the identity buckets and builds the providers.
func New(cfg config.Identity, deps Deps) (*Module, error) {
	if deps.Bus == nil {
		return nil, errors.New("identity needs the bus")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := &Module{cfg: cfg, deps: deps, log: deps.Logger, roles: NewRoles(cfg)}
	m.trusted = clientip.ParsePrefixes(deps.Trusted)
	m.userThrottle, m.addrThrottle = newThrottle(cfg.Lockout.User), newThrottle(cfg.Lockout.Address)
	users, err := deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: usersBucket, Description: "local users (bcrypt hashes)", History: 1})
	if err != nil {
		return nil, err
	}
	tkv, err := deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: tokensBucket, Description: "API tokens (SHA-256 of the secret)", History: 1})
	if err != nil {
		return nil, err
	}
	// The bucket's TTL is the absolute session limit: a record nobody
	// purged still disappears.
	skv, err := deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: sessionsBucket, Description: "browser sessions", History: 1, TTL: cfg.Session.Absolute.D()})
	if err != nil {
		return nil, err
	}
	akv, err := deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: authBucket, Description: "identity secrets (cookie key)", History: 1})
	if err != nil {
		return nil, err
	}
	aead, err := loadKey(ctx, akv)
	if err != nil {
		return nil, err
	}
	if m.policy, err = policy.Open(ctx, deps.Bus); err != nil {
		return nil, err
	}
	m.tokens = tokens{kv: tkv}
	m.sessions = &sessions{kv: skv, aead: aead, idle: cfg.Session.Idle.D(), absolute: cfg.Session.Absolute.D()}
	m.local = newLocal(cfg.Users, users)
	for _, name := range cfg.Providers {
		switch name {
		case "local":
			m.providers = append(m.providers, m.local)
		case "ldap":
			l, err := NewLDAP(cfg.LDAP, deps.Logger.With("provider", "ldap"))
			if err != nil {
				return nil, fmt.Errorf("identity.ldap: %w", err)
			}
			m.providers = append(m.providers, l)
		}
	}
	if cfg.Kerberos.Keytab != "" {
		if m.kerberos, err = NewKerberos(cfg.Kerberos, deps.Logger.With("provider", "kerberos")); err != nil {
			return nil, fmt.Errorf("identity.kerberos: %w", err)
		}
	}
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_auth_logins_total", Help: "Login attempts by provider and result."}, []string{"provider", "result"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_auth_refused_total", Help: "API requests refused by status (401, 403, 503)."}, []string{"code"})
	if deps.Registry != nil {
		deps.Registry.MustRegister(m.logins, m.refused)
	}
	return m, nil
}

// Run creates the first-run admin token when nobody can sign in yet, then
// waits.
func (m *Module) Run(ctx context.Context, ready func()) error {
	if m.cfg.AdminFile {
		if err := m.firstRun(ctx); err != nil {
			return err
		}
	}
	if err := m.prepareSetup(ctx); err != nil {
		return fmt.Errorf("first-run set-up: %w", err)
	}
	ready()
	<-ctx.Done()
	for _, p := range m.providers {
		if c, ok := p.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	}
	return nil
}

// AdminTokenFile is where the first-run token is written under data_dir.
const AdminTokenFile = "admin.token"

// firstRun makes Ops usable with no set-up: with no user and no token in
// existence, an admin token is written to data_dir/admin.token (0600),
// which the CLI on this machine reads by itself. Directory providers do not
// count as users: they cannot grant admin until a grant names someone.
func (m *Module) firstRun(ctx context.Context) error {
	nu, err := m.local.count(ctx)
	if err != nil {
		return fmt.Errorf("count users: %w", err)
	}
	nt, err := m.tokens.count(ctx)
	if err != nil {
		return fmt.Errorf("count tokens: %w", err)
	}
	path := filepath.Join(m.deps.DataDir, AdminTokenFile)
	if nu > 0 || nt > 0 || len(m.cfg.Grants) > 0 {
		return nil
	}
	tok, secret, err := m.tokens.create(ctx, "first-run admin", "admin", "ops", 0)
	if err != nil {
		return fmt.Errorf("create first-run token: %w", err)
	}
	if err := os.MkdirAll(m.deps.DataDir, 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	m.log.Warn("no users or tokens exist: created an admin token; the CLI on this machine uses it; revoke it once you have your own",
		"file", path, "token_id", tok.ID)
	m.emit(ctx, "auth.token_created", map[string]any{"id": tok.ID, "name": tok.Name, "role": tok.Role, "by": "ops"})
	return nil
}

// ClientIP is the request's client address, believing X-Forwarded-For only
// from trusted proxies.
func (m *Module) ClientIP(r *http.Request) netip.Addr { return clientip.From(r, m.trusted) }

// emit publishes an ev.<typ> event and returns where it is stored (0 when
// it is not); identity events are an audit trail, so a failure is logged
// loudly but does not fail the request that caused it.
func (m *Module) emit(ctx context.Context, typ string, data map[string]any) uint64 {
	ev, err := event.New("ops/identity", typ, data)
	var acks []bus.Ack
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		acks, err = m.deps.Bus.Publish(ctx, []event.Event{ev})
	}
	if err != nil || len(acks) == 0 {
		m.log.Error("audit event not stored", "type", typ, "err", err)
		return 0
	}
	return acks[0].Position.Seq
}

// login tries the password providers in order. ErrInvalid from one lets the
// next try; if none accepts and one was unavailable, the answer is
// unavailable (503), never a failed login.
func (m *Module) login(ctx context.Context, user, password string) (*Identity, error) {
	var unavailable error
	for _, p := range m.providers {
		id, err := p.Authenticate(ctx, user, password)
		if err == nil {
			m.logins.WithLabelValues(p.Name(), "ok").Inc()
			return id, nil
		}
		if !errors.Is(err, ErrInvalid) {
			m.logins.WithLabelValues(p.Name(), "unavailable").Inc()
			m.log.Warn("provider failed", "provider", p.Name(), "err", err)
			unavailable = err
			continue
		}
		m.logins.WithLabelValues(p.Name(), "invalid").Inc()
	}
	if unavailable != nil {
		return nil, unavailable
	}
	return nil, ErrInvalid
}

// locked reports a POLICY lock on the user or the client's address.
func (m *Module) locked(ctx context.Context, user string, ip netip.Addr) (string, error) {
	if !m.cfg.Lockout.Policy {
		return "", nil
	}
	if user != "" {
		e, ok, err := m.policy.Get(ctx, policy.User, user)
		if err != nil {
			return "", fmt.Errorf("policy: %w: %v", ErrUnavailable, err)
		}
		if ok {
			return "user " + e.Action + ": " + e.Reason, nil
		}
	}
	if ip.IsValid() {
		e, ok, err := m.policy.Get(ctx, policy.IP, ip.String())
		if err != nil {
			return "", fmt.Errorf("policy: %w: %v", ErrUnavailable, err)
		}
		if ok {
			return "address " + e.Action + ": " + e.Reason, nil
		}
	}
	return "", nil
}

// resolve fills id.Roles from its own roles and the grants.
func (m *Module) resolve(id *Identity) {
	id.Roles = m.roles.Resolve(id.User, id.Groups, id.Roles)
}

// secure says whether the session cookie gets the Secure flag.
func (m *Module) secure(r *http.Request) bool {
	switch m.cfg.Session.Secure {
	case "always":
		return true
	case "never":
		return false
	}
	return r.TLS != nil
}

// anonIP is the anonymised client address for events.
func (m *Module) anonIP(r *http.Request) string {
	a := m.ClientIP(r)
	if !a.IsValid() {
		return ""
	}
	return clientip.Anonymize(a).String()
}

var netipZero netip.Addr
