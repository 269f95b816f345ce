package identity

import (
	"context"
	"errors"
)

// Identity is who made a request, as a provider established it. Roles are
// filled in by the role resolver from grants, never by a provider.
type Identity struct {
	User     string   `json:"user"`
	Name     string   `json:"name,omitempty"`
	Email    string   `json:"email,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	Provider string   `json:"provider"` // local, ldap, kerberos, token
	Roles    []string `json:"roles,omitempty"`
}

// Sentinel errors that providers return; HTTP handlers map them to statuses.
var (
	// ErrInvalid means an unknown user or a wrong password (401). Providers
	// never say which, so the answer cannot be used to enumerate users.
	ErrInvalid = errors.New("invalid user or password")
	// ErrUnavailable means the provider could not be asked, for example the
	// directory is down (503, not a failed login).
	ErrUnavailable = errors.New("identity provider unavailable")
	// ErrNoTicket means a SPNEGO request carried no Kerberos ticket.
	ErrNoTicket = errors.New("no Negotiate token")
	// ErrLocked means the account or client is locked by policy (403).
	ErrLocked = errors.New("locked by policy")
)

// PasswordProvider checks a user name and password.
type PasswordProvider interface {
	// Name is the provider's config name: local, ldap.
	Name() string
	// Authenticate returns the identity, ErrInvalid, or an error wrapping
	// ErrUnavailable.
	Authenticate(ctx context.Context, user, password string) (*Identity, error)
}
