package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
)

// API tokens look like ops_<id>_<secret>. The bucket OPS_TOKENS holds, per
// id, the SHA-256 of the secret (a 32-byte random secret needs no slow hash)
// and the token's role and expiry. Every check reads the bucket, so a
// revoked token is refused on the next request on every node.

const tokensBucket = "OPS_TOKENS"

// Token describes a stored token; the secret is never stored.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Hash      string    `json:"hash,omitempty"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	Expires   time.Time `json:"expires,omitzero"`
}

type tokens struct{ kv jetstream.KeyValue }

// create stores a new token and returns it with its secret form, shown once.
func (t tokens) create(ctx context.Context, name, role, by string, ttl time.Duration) (Token, string, error) {
	idb := make([]byte, 6)
	sec := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return Token{}, "", err
	}
	if _, err := rand.Read(sec); err != nil {
		return Token{}, "", err
	}
	id := hex.EncodeToString(idb)
	secret := base64.RawURLEncoding.EncodeToString(sec)
	h := sha256.Sum256([]byte(secret))
	tok := Token{ID: id, Name: name, Role: role, Hash: hex.EncodeToString(h[:]), Created: time.Now().UTC(), CreatedBy: by}
	if ttl > 0 {
		tok.Expires = tok.Created.Add(ttl)
	}
	b, _ := json.Marshal(tok)
	if _, err := t.kv.Create(ctx, id, b); err != nil {
		return Token{}, "", err
	}
	tok.Hash = ""
	return tok, "ops_" + id + "_" + secret, nil
}

// errBadToken is what every refused token gets, whatever the reason (not
// saying which keeps ids and expiry from being probed); it is ErrInvalid.
var errBadToken error = badToken{}

type badToken struct{}

func (badToken) Error() string {
	return "invalid token: unknown, revoked, expired or mistyped (ops token ls lists the valid ones)"
}

func (badToken) Is(target error) bool { return target == ErrInvalid }

// verify checks a presented token: errBadToken (ErrInvalid) for unknown,
// wrong, expired.
func (t tokens) verify(ctx context.Context, presented string) (Token, error) {
	rest, ok := strings.CutPrefix(presented, "ops_")
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != 12 || len(secret) > 64 {
		return Token{}, errBadToken
	}
	if _, err := hex.DecodeString(id); err != nil {
		return Token{}, errBadToken
	}
	e, err := t.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Token{}, errBadToken
	}
	if err != nil {
		return Token{}, fmt.Errorf("tokens: %w: %v", ErrUnavailable, err)
	}
	var tok Token
	if err := json.Unmarshal(e.Value(), &tok); err != nil {
		return Token{}, errBadToken
	}
	h := sha256.Sum256([]byte(secret))
	want, _ := hex.DecodeString(tok.Hash)
	if subtle.ConstantTimeCompare(h[:], want) != 1 {
		return Token{}, errBadToken
	}
	if !tok.Expires.IsZero() && time.Now().After(tok.Expires) {
		return Token{}, errBadToken
	}
	tok.Hash = ""
	return tok, nil
}

func (t tokens) list(ctx context.Context) ([]Token, error) {
	out := []Token{}
	err := bus.EachKV(ctx, t.kv, func(_ string, v []byte) {
		var tok Token
		if json.Unmarshal(v, &tok) == nil {
			tok.Hash = ""
			out = append(out, tok)
		}
	})
	slices.SortFunc(out, func(a, b Token) int { return a.Created.Compare(b.Created) })
	return out, err
}

func (t tokens) remove(ctx context.Context, id string) (bool, error) {
	if _, err := t.kv.Get(ctx, id); errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return false, nil
	}
	// Purge, not Delete: nothing of a revoked token stays in the bucket.
	return true, t.kv.Purge(ctx, id)
}

func (t tokens) count(ctx context.Context) (int, error) { return bus.CountKV(ctx, t.kv) }
