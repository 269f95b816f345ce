package collector

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/reply"
)

// Write keys created through the API live in the KV bucket OPS_KEYS, keyed by
// the hex SHA-256 of the key: the key itself is shown once, at creation, and
// stored nowhere. Every node watches the bucket, so a new key works on all
// of them and a deleted one stops working at once.

const keyBucket = "OPS_KEYS"

// KeyInfo describes a stored write key.
type KeyInfo struct {
	ID      string    `json:"id"` // the first 12 hex characters of the hash
	Name    string    `json:"name"`
	Prefix  string    `json:"prefix"` // the key's first characters, to recognise it
	Created time.Time `json:"created"`
}

type apiKeys struct {
	b    *bus.Bus
	mu   sync.RWMutex
	kv   jetstream.KeyValue
	have map[string]bool // hex hashes
}

func (k *apiKeys) open(ctx context.Context) error {
	kv, err := k.b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: keyBucket, Description: "write keys created through the API (hashed)", History: 1})
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.kv, k.have = kv, map[string]bool{}
	k.mu.Unlock()
	_, err = bus.WatchKV(ctx, kv, func(key string, present bool) {
		k.mu.Lock()
		k.have[key] = present
		k.mu.Unlock()
	})
	return err
}

func (k *apiKeys) valid(h [32]byte) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.have[hex.EncodeToString(h[:])]
}

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9 _.-]{1,64}$`)

func (k *apiKeys) create(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || !keyNameRE.MatchString(req.Name) {
		reply.Error(w, http.StatusBadRequest, "name", "want {\"name\": ...}: 1 to 64 letters, digits, spaces, _ . -")
		return
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		reply.Error(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	key := "wk_" + hex.EncodeToString(raw)
	h := sha256.Sum256([]byte(key))
	hx := hex.EncodeToString(h[:])
	info := KeyInfo{ID: hx[:12], Name: req.Name, Prefix: key[:7], Created: time.Now().UTC()}
	b, _ := json.Marshal(info)
	k.mu.RLock()
	kv := k.kv
	k.mu.RUnlock()
	if _, err := kv.Create(r.Context(), hx, b); err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	k.mu.Lock()
	k.have[hx] = true // usable at once on this node, before the watch says so
	k.mu.Unlock()
	reply.JSON(w, http.StatusCreated, map[string]any{"key": key, "info": info, "note": "the key is shown once; Ops keeps only its hash"})
}

func (k *apiKeys) list(w http.ResponseWriter, r *http.Request) {
	out, err := k.infos(r.Context())
	if err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"keys": out})
}

func (k *apiKeys) infos(ctx context.Context) ([]KeyInfo, error) {
	k.mu.RLock()
	kv := k.kv
	k.mu.RUnlock()
	out := []KeyInfo{}
	lister, err := kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for key := range lister.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var info KeyInfo
		if json.Unmarshal(e.Value(), &info) == nil {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func (k *apiKeys) remove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	k.mu.RLock()
	kv := k.kv
	k.mu.RUnlock()
	lister, err := kv.ListKeys(r.Context())
	if err == nil {
		for key := range lister.Keys() {
			if len(id) >= 8 && len(key) >= len(id) && key[:len(id)] == id {
				if err := kv.Delete(r.Context(), key); err != nil {
					reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
					return
				}
				k.mu.Lock()
				k.have[key] = false
				k.mu.Unlock()
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
	}
	reply.Error(w, http.StatusNotFound, "id", "no write key with that id (see GET /api/v1/keys)")
}
