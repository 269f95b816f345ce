package identity

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
)

// Local users come from config (read-only) and from the OPS_USERS bucket
// (ops user add). A config user shadows a stored one of the same name.

const usersBucket = "OPS_USERS"

// StoredUser is a local user kept in the bus.
type StoredUser struct {
	Name         string    `json:"name"`
	PasswordHash string    `json:"password_hash"`
	Email        string    `json:"email,omitempty"`
	Groups       []string  `json:"groups,omitempty"`
	Roles        []string  `json:"roles,omitempty"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
}

// userNameRE keeps stored names usable as bucket keys and in URLs.
var userNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Local is the local-user password provider.
type Local struct {
	cfg map[string]config.User
	kv  jetstream.KeyValue
}

var _ PasswordProvider = (*Local)(nil)

func newLocal(users []config.User, kv jetstream.KeyValue) *Local {
	l := &Local{cfg: map[string]config.User{}, kv: kv}
	for _, u := range users {
		l.cfg[u.Name] = u
	}
	return l
}

// Name implements PasswordProvider.
func (l *Local) Name() string { return "local" }

// dummyHash is checked when the user does not exist, so that an unknown
// name costs the same time as a wrong password. It is made on first use:
// at start it would add a bcrypt (about 60 ms) to every start.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	return h
})

// Authenticate implements PasswordProvider.
func (l *Local) Authenticate(ctx context.Context, user, password string) (*Identity, error) {
	u, ok, err := l.lookup(ctx, user)
	if err != nil {
		return nil, err
	}
	if !ok {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return nil, ErrInvalid
	}
	if password == "" || !CheckPassword(u.PasswordHash, password) {
		return nil, ErrInvalid
	}
	return &Identity{User: u.Name, Name: u.Name, Email: u.Email, Groups: u.Groups, Roles: u.Roles, Provider: "local"}, nil
}

// lookup finds a user in config, then in the bucket.
func (l *Local) lookup(ctx context.Context, name string) (StoredUser, bool, error) {
	if u, ok := l.cfg[name]; ok {
		return StoredUser{Name: u.Name, PasswordHash: u.PasswordHash, Email: u.Email, Groups: u.Groups, Roles: u.Roles}, true, nil
	}
	if !userNameRE.MatchString(name) {
		return StoredUser{}, false, nil
	}
	e, err := l.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return StoredUser{}, false, nil
	}
	if err != nil {
		return StoredUser{}, false, fmt.Errorf("local users: %w: %v", ErrUnavailable, err)
	}
	var u StoredUser
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		return StoredUser{}, false, fmt.Errorf("user %q: %w", name, err)
	}
	return u, true, nil
}

// list returns config and stored users, config first; hashes are cleared.
func (l *Local) list(ctx context.Context) ([]StoredUser, error) {
	var out []StoredUser
	for _, u := range l.cfg {
		out = append(out, StoredUser{Name: u.Name, Email: u.Email, Groups: u.Groups, Roles: u.Roles})
	}
	slices.SortFunc(out, func(a, b StoredUser) int { return strings.Compare(a.Name, b.Name) })
	keys, err := l.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var stored []StoredUser
	for k := range keys.Keys() {
		if _, shadow := l.cfg[k]; shadow {
			continue
		}
		u, ok, err := l.lookup(ctx, k)
		if err != nil {
			return nil, err
		}
		if ok {
			u.PasswordHash = ""
			stored = append(stored, u)
		}
	}
	slices.SortFunc(stored, func(a, b StoredUser) int { return strings.Compare(a.Name, b.Name) })
	return append(out, stored...), nil
}

// count is the number of users, config and stored.
func (l *Local) count(ctx context.Context) (int, error) {
	n, err := bus.CountKV(ctx, l.kv)
	return n + len(l.cfg), err
}

// HashPassword returns a bcrypt hash for a new password.
func HashPassword(pw string) (string, error) {
	if len(pw) < 8 {
		return "", errors.New("password needs at least 8 characters")
	}
	if len(pw) > 72 {
		return "", errors.New("password is longer than 72 bytes (bcrypt's limit)")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	return string(h), err
}

// CheckPassword verifies pw against a bcrypt or argon2id (PHC string) hash.
func CheckPassword(hash, pw string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		return checkArgon2id(hash, pw)
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// checkArgon2id verifies the PHC format $argon2id$v=19$m=65536,t=3,p=4$salt$key
// that argon2 tools and libraries write.
func checkArgon2id(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<22 || t > 64 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(key) == 0 || len(key) > 1024 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}
