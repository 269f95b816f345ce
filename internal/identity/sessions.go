package identity

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
)

// A browser session is a record in OPS_AUTH_SESSIONS keyed by a random id;
// the cookie carries that id sealed with AES-GCM under a key kept in the
// OPS_AUTH bucket (created once, shared by every node). Sealing makes a
// tampered or forged cookie fail before any lookup; the server-side record
// makes logout and expiry final.

const (
	sessionsBucket = "OPS_AUTH_SESSIONS"
	authBucket     = "OPS_AUTH"
	cookieName     = "ops_session"
	// edgeCookie carries sessions made on hosts the proxy fronts (sign-in
	// under /_ops/). It is sealed for its own name and its record says so:
	// a proxy session, which the upstream could see if anything leaked
	// it, is never an API session.
	edgeCookie = "ops_edge"
	csrfHeader = "X-CSRF-Token"
	// seenEvery bounds writes: last-use is recorded at most this often, so
	// the idle limit is exact to within it.
	seenEvery = time.Minute
)

// Session is the stored record of a signed-in browser.
type Session struct {
	ID       string    `json:"-"`
	User     string    `json:"user"`
	Name     string    `json:"name,omitempty"`
	Email    string    `json:"email,omitempty"`
	Groups   []string  `json:"groups,omitempty"`
	Roles    []string  `json:"roles,omitempty"` // the provider's own roles (local users)
	Provider string    `json:"provider"`
	Created  time.Time `json:"created"`
	Seen     time.Time `json:"seen"`
	CSRF     string    `json:"csrf"`
	// Edge marks a session made through the proxy: valid only there.
	Edge bool `json:"edge,omitempty"`
}

type sessions struct {
	kv       jetstream.KeyValue
	aead     cipher.AEAD
	idle     time.Duration
	absolute time.Duration
}

// loadKey reads the cookie key, creating it if this is the first node.
func loadKey(ctx context.Context, kv jetstream.KeyValue) (cipher.AEAD, error) {
	key, err := bus.Secret(ctx, kv, "cookie-key", 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// create stores a session for id and returns the cookie value; edge
// makes it a proxy session (cookie ops_edge).
func (s *sessions) create(ctx context.Context, id *Identity, edge bool) (*Session, string, error) {
	now := time.Now().UTC()
	sess := &Session{
		ID: randHex(16), User: id.User, Name: id.Name, Email: id.Email, Groups: id.Groups, Roles: id.Roles,
		Provider: id.Provider, Created: now, Seen: now, CSRF: randHex(16), Edge: edge,
	}
	b, _ := json.Marshal(sess)
	if _, err := s.kv.Create(ctx, sess.ID, b); err != nil {
		return nil, "", fmt.Errorf("store session: %w: %v", ErrUnavailable, err)
	}
	return sess, s.seal(sess.ID, cookieFor(edge)), nil
}

// cookieFor is the cookie name of an API (false) or proxy (true) session.
func cookieFor(edge bool) string {
	if edge {
		return edgeCookie
	}
	return cookieName
}

// IsSessionCookie reports whether a cookie name is one of Ops's session
// cookies (the proxy never forwards them).
func IsSessionCookie(name string) bool { return name == cookieName || name == edgeCookie }

// seal encrypts sid for the cookie called name: a value sealed for one
// cookie does not open as the other.
func (s *sessions) seal(sid, name string) string {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(sid), []byte(name)))
}

// open returns the session id in the value of cookie name, or false if it
// was not sealed by this deployment for that cookie.
func (s *sessions) open(v, name string) (string, bool) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(v)
	ns := s.aead.NonceSize()
	if err != nil || len(raw) < ns+s.aead.Overhead() {
		return "", false
	}
	sid, err := s.aead.Open(nil, raw[:ns], raw[ns:], []byte(name))
	if err != nil || len(sid) != 32 {
		return "", false
	}
	return string(sid), true
}

// get returns the live session the value of cookie name holds. It ends
// sessions past their idle or absolute limit and records use at most once
// per seenEvery.
func (s *sessions) get(ctx context.Context, cookie, name string) (*Session, error) {
	sid, ok := s.open(cookie, name)
	if !ok {
		return nil, ErrInvalid
	}
	e, err := s.kv.Get(ctx, sid)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrInvalid
	}
	if err != nil {
		return nil, fmt.Errorf("sessions: %w: %v", ErrUnavailable, err)
	}
	var sess Session
	if err := json.Unmarshal(e.Value(), &sess); err != nil || sess.Edge != (name == edgeCookie) {
		return nil, ErrInvalid
	}
	sess.ID = sid
	now := time.Now()
	if now.Sub(sess.Seen) > s.idle || now.Sub(sess.Created) > s.absolute {
		_ = s.kv.Purge(ctx, sid)
		return nil, ErrInvalid
	}
	if now.Sub(sess.Seen) > seenEvery {
		sess.Seen = now.UTC()
		b, _ := json.Marshal(&sess)
		// Update by revision: a concurrent logout (purge) wins over this.
		_, _ = s.kv.Update(ctx, sid, b, e.Revision())
	}
	return &sess, nil
}

func (s *sessions) end(ctx context.Context, sid string) error { return s.kv.Purge(ctx, sid) }

// cookie builds the session cookie called name; secure follows
// identity.session.secure.
func (s *sessions) cookie(name, value string, secure bool, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(maxAge / time.Second),
	}
}
