package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
)

//go:embed web/ops.js
var opsJS []byte

var (
	opsJSOnce sync.Once
	opsJSGz   []byte
	opsJSETag string
)

// prepareJS compresses the tracker once, on first request rather than at
// start (the compressor's state is most of a megabyte while it works).
func prepareJS() {
	var b bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = gz.Write(opsJS)
	_ = gz.Close()
	opsJSGz = b.Bytes()
	h := sha256.Sum256(opsJS)
	opsJSETag = `"` + hex.EncodeToString(h[:8]) + `"`
}

// serveJS serves the browser tracker, gzip'd when the browser accepts it.
func serveJS(w http.ResponseWriter, r *http.Request) {
	opsJSOnce.Do(prepareJS)
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("ETag", opsJSETag)
	h.Add("Vary", "Accept-Encoding")
	if r.Header.Get("If-None-Match") == opsJSETag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		_, _ = w.Write(opsJSGz)
		return
	}
	_, _ = w.Write(opsJS)
}

// salts hands out the day's secret salt for cookieless visitor ids. Salts
// live in the KV bucket OPS_SALTS (so every node derives the same id) and
// expire after two days, so yesterday's visitors cannot be linked to
// today's: the privacy-first analytics approach.
type salts struct {
	b   *bus.Bus
	mu  sync.Mutex
	day string
	val []byte
}

const saltBucket = "OPS_SALTS"

func (s *salts) today(ctx context.Context) ([]byte, error) {
	day := time.Now().UTC().Format("2006-01-02")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.day == day {
		return s.val, nil
	}
	kv, err := s.b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: saltBucket, Description: "daily salts for cookieless visitor ids", TTL: 49 * time.Hour, History: 1})
	if err != nil {
		return nil, err
	}
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := kv.Create(ctx, day, salt); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		e, err := kv.Get(ctx, day) // another node made today's first
		if err != nil {
			return nil, err
		}
		salt = e.Value()
	}
	s.day, s.val = day, salt
	return salt, nil
}

// visitorID derives a browser's anonymous id from the day's salt, the site,
// the client's truncated address and its user agent. The raw address is used
// here and stored nowhere.
func visitorID(salt []byte, r *http.Request, client netip.Addr) string {
	site := ""
	for _, h := range []string{r.Header.Get("Origin"), r.Header.Get("Referer")} {
		if u, err := url.Parse(h); err == nil && u.Host != "" {
			site = u.Hostname()
			break
		}
	}
	ip := ""
	if a := client; a.IsValid() {
		a = a.Unmap()
		bits := 24
		if a.Is6() {
			bits = 48
		}
		if p, err := a.Prefix(bits); err == nil {
			ip = p.String()
		}
	}
	h := sha256.New()
	h.Write(salt)
	for _, p := range []string{site, ip, r.UserAgent()} {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return "v_" + hex.EncodeToString(h.Sum(nil)[:12])
}
