package analytics

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/reply"
)

// Shared dashboards: a read-only link to one site's dashboard for people
// without an account, as Plausible's shared links. The link carries a
// 128-bit secret; Ops keeps only its SHA-256, in the KV bucket OPS_SHARES,
// so deleting the share revokes the link at once.

// WritePermission creates and deletes shares and sends reports.
const WritePermission = "analytics:write"

const shareBucket = "OPS_SHARES"

// Share is one shared link (its secret is not kept).
type Share struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Site    string    `json:"site,omitempty"` // empty: every site
	Hash    string    `json:"hash,omitempty"`
	By      string    `json:"created_by,omitempty"`
	Created time.Time `json:"created"`
}

type shares struct {
	m    *Module
	once sync.Mutex
	kv   jetstream.KeyValue
}

func (s *shares) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.once.Lock()
	defer s.once.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := s.m.deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: shareBucket, Description: "shared dashboard links (hashed)", History: 1})
	if err != nil {
		return nil, err
	}
	s.kv = kv
	return kv, nil
}

var shareIDRE = regexp.MustCompile(`^[0-9a-f]{12}$`)

// siteRE is a host name as the hostname dimension holds it.
var siteRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?$`)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func (s *shares) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
		Site string `json:"site"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", "want JSON {\"name\", \"site\"}: "+err.Error())
		return
	}
	in.Site = strings.ToLower(strings.TrimSpace(in.Site))
	switch {
	case in.Name == "" || len(in.Name) > 100:
		reply.Error(w, http.StatusBadRequest, "name", "want 1 to 100 characters")
		return
	case in.Site != "" && !siteRE.MatchString(in.Site):
		reply.Error(w, http.StatusBadRequest, "site", "want a host name such as shop.example, or nothing for every site")
		return
	}
	kv, err := s.bucket(r.Context())
	if err != nil {
		s.m.deps.Bus.WriteError(w, err)
		return
	}
	id, secret := randomHex(6), randomHex(16)
	sh := Share{ID: id, Name: in.Name, Site: in.Site, Hash: hashSecret(secret), Created: time.Now().UTC()}
	if who := identity.FromContext(r.Context()); who != nil {
		sh.By = who.User
	}
	b, _ := json.Marshal(sh)
	if _, err := kv.Create(r.Context(), id, b); err != nil {
		s.m.deps.Bus.WriteError(w, err)
		return
	}
	token := "sh_" + id + "_" + secret
	sh.Hash = ""
	reply.JSON(w, http.StatusCreated, map[string]any{"share": sh, "token": token, "link": "/share/" + token,
		"note": "the link is shown once; Ops keeps only a hash of it"})
}

func (s *shares) list(w http.ResponseWriter, r *http.Request) {
	out, err := s.all(r.Context())
	if err != nil {
		s.m.deps.Bus.WriteError(w, err)
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"shares": out})
}

func (s *shares) all(ctx context.Context) ([]Share, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := []Share{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var sh Share
		if json.Unmarshal(e.Value(), &sh) == nil {
			sh.Hash = ""
			out = append(out, sh)
		}
	}
	return out, nil
}

func (s *shares) remove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !shareIDRE.MatchString(id) {
		reply.Error(w, http.StatusNotFound, "id", "no such share")
		return
	}
	kv, err := s.bucket(r.Context())
	if err != nil {
		s.m.deps.Bus.WriteError(w, err)
		return
	}
	if _, err := kv.Get(r.Context(), id); err != nil {
		reply.Error(w, http.StatusNotFound, "id", "no such share")
		return
	}
	if err := kv.Purge(r.Context(), id); err != nil {
		s.m.deps.Bus.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ErrNoShare is a link that is malformed, unknown or revoked.
var ErrNoShare = errors.New("no such shared link (it may have been revoked)")

// Shared checks a share link's token and returns its share.
func (m *Module) Shared(ctx context.Context, token string) (*Share, error) {
	rest, ok := strings.CutPrefix(token, "sh_")
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || !shareIDRE.MatchString(id) || len(secret) != 32 {
		return nil, ErrNoShare
	}
	kv, err := m.shares.bucket(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNoShare
	}
	if err != nil {
		return nil, err
	}
	var sh Share
	if err := json.Unmarshal(e.Value(), &sh); err != nil {
		return nil, ErrNoShare
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(sh.Hash)) != 1 {
		return nil, ErrNoShare
	}
	sh.Hash = ""
	return &sh, nil
}

// sharedReport serves GET /share/{token}/api/{report}: the report as its
// API route answers it, for the share's site only. No session or token is
// needed; the link is the credential.
func (m *Module) sharedReport(report http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sh, err := m.Shared(r.Context(), r.PathValue("token"))
		if errors.Is(err, ErrNoShare) {
			reply.Error(w, http.StatusNotFound, "token", err.Error())
			return
		}
		if err != nil {
			m.deps.Bus.WriteError(w, err)
			return
		}
		q := r.URL.Query()
		q.Del("site")
		if sh.Site != "" {
			q.Set("site", sh.Site)
		}
		r2 := r.Clone(r.Context())
		r2.URL.RawQuery = q.Encode()
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("X-Robots-Tag", "noindex")
		report(w, r2)
	})
}
