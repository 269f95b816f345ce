// Package policy is the POLICY bucket: decisions that the analytics side
// makes and the edge enforces (locked users, blocked client addresses, and
// later paths, rate overrides and maintenance mode for the proxy).
//
// Entries are written by the policy module from ev.policy.set and
// ev.policy.clear events (so a processor in the event graph can lock an
// account), and by admins through /api/v1/policy. Readers check an entry's
// Until themselves, so an expired lock ends on time without a sweeper.
//
// Keys are <kind>.<subject as unpadded base64url>, since user names and IPv6
// addresses hold characters that bucket keys may not. Addresses are stored
// anonymised (/24, /48), the form every Ops event carries them in.
package policy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/net/idna"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/canon"
	"github.com/opsgraph/ops/internal/clientip"
)

// Bucket is the KV bucket's name.
const Bucket = "POLICY"

// Kinds of subject a policy entry is about.
const (
	User        = "user"        // lock: logins and auth: required routes refuse the user
	IP          = "ip"          // block: 403 at the proxy and at login; rate: a request rate at the proxy
	Path        = "path"        // block: the proxy answers 403 for this path and below
	Maintenance = "maintenance" // on: the proxy answers 503 on this route (or * for all)
	Domain      = "domain"      // block: the resolver answers this name and its subdomains as blocked
	Browse      = "browse"      // allow, block: the forward proxy's decision for [group:]host[/path], over its rules and categories
)

// Entry is one decision.
type Entry struct {
	Kind    string    `json:"kind"`
	Subject string    `json:"subject"`
	Action  string    `json:"action"` // lock (user), block (ip, path, domain), rate (ip), on (maintenance)
	Rate    float64   `json:"rate,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Set     time.Time `json:"set"`
	Until   time.Time `json:"until,omitzero"` // zero: until cleared
	By      string    `json:"by,omitempty"`
}

// Active reports whether the entry is in force at t.
func (e Entry) Active(t time.Time) bool { return e.Until.IsZero() || t.Before(e.Until) }

// Store reads and writes the bucket.
type Store struct{ kv jetstream.KeyValue }

// Open opens (or creates) the bucket.
func Open(ctx context.Context, b *bus.Bus) (*Store, error) {
	kv, err := b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, Description: "edge and login policy written by the graph and admins", History: 5})
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv}, nil
}

// KV is the underlying bucket, for watchers.
func (s *Store) KV() jetstream.KeyValue { return s.kv }

// Watch calls fn with every entry in the bucket and then with each change
// (e nil: the key was cleared) until ctx ends, watching again after a
// failure. Readers that mirror the bucket in memory (the proxy, the
// resolver) use it; a change applies within the watch's delay.
func (s *Store) Watch(ctx context.Context, log *slog.Logger, fn func(key string, e *Entry)) {
	for ctx.Err() == nil {
		done, err := bus.WatchKV(ctx, s.kv, func(key string, present bool) {
			if !present {
				fn(key, nil)
				return
			}
			v, err := s.kv.Get(ctx, key)
			if err != nil {
				return
			}
			var e Entry
			if json.Unmarshal(v.Value(), &e) != nil {
				log.Warn("unreadable policy entry", "key", key)
				return
			}
			fn(key, &e)
		})
		if err != nil {
			log.Warn("policy watch failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		<-done
	}
}

var (
	errKind    = errors.New("kind: want user, ip, path, maintenance, domain or browse")
	errSubject = errors.New("subject")
)

// Normalize checks kind and subject and returns the subject's stored form.
func Normalize(kind, subject string) (string, error) {
	switch kind {
	case User:
		if subject == "" || len(subject) > 256 {
			return "", fmt.Errorf("%w: want a user name of 1 to 256 bytes", errSubject)
		}
		return subject, nil
	case IP:
		a, err := netip.ParseAddr(strings.TrimSpace(subject))
		if err != nil {
			return "", fmt.Errorf("%w: %q is not an IP address", errSubject, subject)
		}
		return clientip.Anonymize(a).String(), nil
	case Path:
		if len(subject) > 1024 || strings.ContainsAny(subject, "?#") {
			return "", fmt.Errorf("%w: want a path such as /wp-login.php (no query), got %q", errSubject, subject)
		}
		// Stored in the canonical form the proxy matches requests in, so
		// /x/../wp-login.php blocks what it names.
		cp, err := canon.Path(subject, canon.Options{KeepEncodedSlash: true})
		if err != nil {
			return "", fmt.Errorf("%w: want a path such as /wp-login.php, got %q (%v)", errSubject, subject, err)
		}
		return cp, nil
	case Maintenance:
		if subject == "" || len(subject) > 64 {
			return "", fmt.Errorf("%w: want a route name or *", errSubject)
		}
		return subject, nil
	case Domain:
		// The form the resolver matches names in: lower case, no
		// trailing dot.
		d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(subject)), ".")
		if !domainName(d) {
			return "", fmt.Errorf("%w: want a domain name such as ads.example.com, got %q", errSubject, subject)
		}
		return d, nil
	case Browse:
		return normalizeBrowse(subject)
	}
	return "", fmt.Errorf("%w, got %q", errKind, kind)
}

// normalizeBrowse checks a forward proxy subject, [group:]host[/path]:
// the host lower case in A-labels, the path canonical (the form the
// proxy matches requests in).
func normalizeBrowse(subject string) (string, error) {
	bad := fmt.Errorf("%w: want [group:]host[/path], e.g. staff:example.com/news, got %q", errSubject, subject)
	s := strings.TrimSpace(subject)
	if s == "" || len(s) > 1024 || strings.ContainsAny(s, "?# \t") {
		return "", bad
	}
	group := ""
	if g, rest, ok := strings.Cut(s, ":"); ok {
		if g == "" || len(g) > 256 {
			return "", bad
		}
		group, s = g+":", rest
	}
	host, path, hasPath := strings.Cut(s, "/")
	h, err := idna.Lookup.ToASCII(strings.TrimSuffix(host, "."))
	if err != nil || !domainName(strings.ToLower(h)) {
		return "", bad
	}
	out := group + strings.ToLower(h)
	if hasPath && path != "" {
		cp, err := canon.Path("/"+path, canon.Options{KeepEncodedSlash: true})
		if err != nil {
			return "", bad
		}
		out += cp
	}
	return out, nil
}

// domainName: 1 to 253 bytes of dot-separated labels of 1 to 63 letters,
// digits, hyphens or underscores.
func domainName(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Key is the bucket key for a normalized subject.
func Key(kind, subject string) string {
	return kind + "." + base64.RawURLEncoding.EncodeToString([]byte(subject))
}

// Put stores e (normalising its subject).
func (s *Store) Put(ctx context.Context, e Entry) (Entry, error) {
	sub, err := Normalize(e.Kind, e.Subject)
	if err != nil {
		return e, err
	}
	e.Subject = sub
	if e.Set.IsZero() {
		e.Set = time.Now().UTC()
	}
	b, _ := json.Marshal(e)
	_, err = s.kv.Put(ctx, Key(e.Kind, sub), b)
	return e, err
}

// Clear removes the entry for kind and subject.
func (s *Store) Clear(ctx context.Context, kind, subject string) error {
	sub, err := Normalize(kind, subject)
	if err != nil {
		return err
	}
	err = s.kv.Delete(ctx, Key(kind, sub))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// Get returns the active entry for kind and subject, if any.
func (s *Store) Get(ctx context.Context, kind, subject string) (Entry, bool, error) {
	sub, err := Normalize(kind, subject)
	if err != nil {
		return Entry{}, false, err
	}
	v, err := s.kv.Get(ctx, Key(kind, sub))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, err
	}
	var e Entry
	if err := json.Unmarshal(v.Value(), &e); err != nil {
		return Entry{}, false, fmt.Errorf("policy %s: %w", v.Key(), err)
	}
	return e, e.Active(time.Now()), nil
}

// List returns every entry, active or not, sorted by kind and subject.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	out := []Entry{}
	err := bus.EachKV(ctx, s.kv, func(_ string, v []byte) {
		var e Entry
		if json.Unmarshal(v, &e) == nil {
			out = append(out, e)
		}
	})
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	return out, err
}
