package proxy

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// cacheStore keeps responses: an index in memory (rebuilt from meta files
// at start), bodies on disk named by their SHA-256, so one body served
// under many URLs is stored once, and the hottest small bodies in memory
// too. Disk use is bounded by evicting the least recently used entries;
// a body file goes when no entry refers to it.
//
// Lock order: cacheStore.mu only; files are written outside it and
// renamed into place, so a reader never sees half a body.
type cacheStore struct {
	dir     string
	diskMax int64
	memMax  int64
	objMax  int64
	log     *slog.Logger

	mu       sync.Mutex
	entries  map[string][]*centry // URL key -> variants by Vary
	lru      *list.List           // of *centry, most recent at front
	refs     map[string]int       // body hash -> entries using it
	sizes    map[string]int64     // body hash -> bytes
	diskSize int64
	mem      map[string]*list.Element // body hash -> element of memLRU
	memLRU   *list.List               // of *memBody
	memSize  int64
	flights  map[string]*flight
}

type memBody struct {
	hash string
	b    []byte
}

// centry is one stored response (one variant of one URL).
type centry struct {
	Key      string            `json:"key"`
	Vary     map[string]string `json:"vary,omitempty"` // request header -> value it was stored for
	Status   int               `json:"status"`
	Header   http.Header       `json:"header"`
	Body     string            `json:"body"` // SHA-256 hex
	Size     int64             `json:"size"`
	Stored   time.Time         `json:"stored"`   // when the response (or its revalidation) arrived
	InitAge  time.Duration     `json:"init_age"` // corrected initial age then
	Lifetime time.Duration     `json:"lifetime"` // freshness lifetime
	elem     *list.Element
}

func (e *centry) age(now time.Time) time.Duration { return e.InitAge + now.Sub(e.Stored) }

func (e *centry) metaName() string {
	h := sha256.New()
	h.Write([]byte(e.Key))
	for k, v := range e.Vary {
		fmt.Fprintf(h, "\x00%s=%s", k, v)
	}
	return hex.EncodeToString(h.Sum(nil)) + ".json"
}

type flight struct{ done chan struct{} }

func openCache(dir string, diskMax, memMax, objMax int64, log *slog.Logger) (*cacheStore, error) {
	for _, d := range []string{"meta", "bodies", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, err
		}
	}
	s := &cacheStore{dir: dir, diskMax: diskMax, memMax: memMax, objMax: objMax, log: log,
		entries: map[string][]*centry{}, lru: list.New(), refs: map[string]int{}, sizes: map[string]int64{},
		mem: map[string]*list.Element{}, memLRU: list.New(), flights: map[string]*flight{}}
	tmps, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	for _, t := range tmps {
		_ = os.Remove(filepath.Join(dir, "tmp", t.Name())) // unfinished writes from before a crash
	}
	metas, err := os.ReadDir(filepath.Join(dir, "meta"))
	if err != nil {
		return nil, err
	}
	for _, m := range metas {
		p := filepath.Join(dir, "meta", m.Name())
		b, err := os.ReadFile(p)
		var e centry
		if err != nil || json.Unmarshal(b, &e) != nil {
			_ = os.Remove(p)
			continue
		}
		fi, err := os.Stat(s.bodyPath(e.Body))
		if err != nil || fi.Size() != e.Size {
			_ = os.Remove(p)
			continue
		}
		s.index(&e)
	}
	// Bodies nothing refers to (a crash between writes) are removed.
	_ = filepath.WalkDir(filepath.Join(dir, "bodies"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && s.refs[d.Name()] == 0 {
			_ = os.Remove(p)
		}
		return nil
	})
	return s, nil
}

func (s *cacheStore) bodyPath(h string) string {
	return filepath.Join(s.dir, "bodies", h[:2], h)
}

// index adds e; call with mu held (or before the store is shared).
func (s *cacheStore) index(e *centry) {
	// Take the new reference first: the entry it replaces may share the
	// body, which must not be deleted in between.
	if s.refs[e.Body] == 0 {
		s.sizes[e.Body] = e.Size
		s.diskSize += e.Size
	}
	s.refs[e.Body]++
	vs := s.entries[e.Key]
	for i, old := range vs {
		if sameVary(old.Vary, e.Vary) {
			s.unindex(old, i, false) // same meta file name, already overwritten
			vs = s.entries[e.Key]
			break
		}
	}
	s.entries[e.Key] = append(vs, e)
	e.elem = s.lru.PushFront(e)
}

// unindex removes variant i of e.Key; the body file goes with its last
// reference. Call with mu held.
func (s *cacheStore) unindex(e *centry, i int, removeMeta bool) {
	vs := s.entries[e.Key]
	s.entries[e.Key] = append(vs[:i:i], vs[i+1:]...)
	if len(s.entries[e.Key]) == 0 {
		delete(s.entries, e.Key)
	}
	s.lru.Remove(e.elem)
	if removeMeta {
		_ = os.Remove(filepath.Join(s.dir, "meta", e.metaName()))
	}
	s.refs[e.Body]--
	if s.refs[e.Body] <= 0 {
		delete(s.refs, e.Body)
		s.diskSize -= s.sizes[e.Body]
		delete(s.sizes, e.Body)
		_ = os.Remove(s.bodyPath(e.Body))
		if el, ok := s.mem[e.Body]; ok {
			s.memSize -= int64(len(el.Value.(*memBody).b))
			s.memLRU.Remove(el)
			delete(s.mem, e.Body)
		}
	}
}

func sameVary(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// varyValues are the request's values of the headers a response varies on.
func varyValues(req *http.Request, resp http.Header) map[string]string {
	var out map[string]string
	for _, line := range resp.Values("Vary") {
		for _, name := range strings.Split(line, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if out == nil {
				out = map[string]string{}
			}
			out[name] = strings.Join(req.Header.Values(name), ",")
		}
	}
	return out
}

// lookup finds the variant of key that matches req.
func (s *cacheStore) lookup(key string, req *http.Request) *centry {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries[key] {
		ok := true
		for name, v := range e.Vary {
			if strings.Join(req.Header.Values(name), ",") != v {
				ok = false
				break
			}
		}
		if ok {
			s.lru.MoveToFront(e.elem)
			return e
		}
	}
	return nil
}

// body opens a stored body, from memory when it is there.
func (s *cacheStore) body(e *centry) (io.ReadCloser, error) {
	s.mu.Lock()
	if el, ok := s.mem[e.Body]; ok {
		s.memLRU.MoveToFront(el)
		b := el.Value.(*memBody).b
		s.mu.Unlock()
		return io.NopCloser(strings.NewReader(string(b))), nil
	}
	s.mu.Unlock()
	f, err := os.Open(s.bodyPath(e.Body))
	if err != nil {
		return nil, err
	}
	if e.Size <= s.memMax/16 { // small and asked for again: keep it in memory
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || int64(len(b)) != e.Size {
			return nil, errors.New("stored body changed size")
		}
		s.remember(e.Body, b)
		return io.NopCloser(strings.NewReader(string(b))), nil
	}
	return f, nil
}

func (s *cacheStore) remember(h string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mem[h]; ok || s.refs[h] == 0 {
		return
	}
	s.mem[h] = s.memLRU.PushFront(&memBody{hash: h, b: b})
	s.memSize += int64(len(b))
	for s.memSize > s.memMax && s.memLRU.Len() > 0 {
		el := s.memLRU.Back()
		mb := el.Value.(*memBody)
		s.memLRU.Remove(el)
		delete(s.mem, mb.hash)
		s.memSize -= int64(len(mb.b))
	}
}

// writer receives a body as it streams to the client and stores it when
// complete; an incomplete or oversized body is thrown away.
type cacheWriter struct {
	s    *cacheStore
	e    *centry
	f    *os.File
	h    hash.Hash
	n    int64
	fail bool
}

func (s *cacheStore) newWriter(e *centry) *cacheWriter {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "body-*")
	if err != nil {
		s.log.Warn("cache write", "err", err)
		return nil
	}
	return &cacheWriter{s: s, e: e, f: f, h: sha256.New()}
}

func (w *cacheWriter) Write(p []byte) (int, error) {
	if w.fail {
		return len(p), nil
	}
	w.n += int64(len(p))
	if w.n > w.s.objMax {
		w.fail = true
		return len(p), nil
	}
	w.h.Write(p)
	if _, err := w.f.Write(p); err != nil {
		w.fail = true
	}
	return len(p), nil
}

// commit stores the entry if the body arrived whole.
func (w *cacheWriter) commit(complete bool) {
	name := w.f.Name()
	_ = w.f.Close()
	defer func() { _ = os.Remove(name) }()
	if !complete || w.fail {
		return
	}
	e := w.e
	e.Body, e.Size = hex.EncodeToString(w.h.Sum(nil)), w.n
	bp := w.s.bodyPath(e.Body)
	if err := os.MkdirAll(filepath.Dir(bp), 0o750); err != nil {
		return
	}
	if _, err := os.Stat(bp); err != nil {
		if err := os.Rename(name, bp); err != nil {
			return
		}
	}
	w.s.save(e)
}

// save writes e's meta file and indexes it, then evicts down to the limit.
func (s *cacheStore) save(e *centry) {
	b, _ := json.Marshal(e)
	tmp := filepath.Join(s.dir, "tmp", e.metaName())
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Rename(tmp, filepath.Join(s.dir, "meta", e.metaName())); err != nil {
		return
	}
	s.index(e)
	for s.diskSize > s.diskMax && s.lru.Len() > 1 {
		old := s.lru.Back().Value.(*centry)
		for i, v := range s.entries[old.Key] {
			if v == old {
				s.unindex(old, i, true)
				break
			}
		}
	}
}

// refresh applies a 304's headers to e (RFC 9111 4.3.4) and restarts its
// age.
func (s *cacheStore) refresh(e *centry, resp *http.Response, requested, arrived time.Time) *centry {
	n := *e
	n.Header = e.Header.Clone()
	for k, v := range resp.Header {
		switch k {
		case "Content-Length", "Content-Encoding", "Transfer-Encoding", "Content-Range":
			continue
		}
		n.Header[k] = v
	}
	n.Stored, n.InitAge = arrived, initialAge(resp.Header, requested, arrived)
	n.Lifetime = freshness(n.Header, responseDate(n.Header, arrived))
	s.save(&n)
	return &n
}

// purge removes entries whose key is url, or starts with it when prefix.
func (s *cacheStore) purge(url string, prefix bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, vs := range s.entries {
		if k == url || prefix && strings.HasPrefix(k, url) {
			for len(vs) > 0 {
				s.unindex(vs[0], 0, true)
				vs = s.entries[k]
				n++
			}
		}
	}
	return n
}

// join returns (flight, true) for the first request of key, which must
// call land; others get the leader's flight to wait on.
func (s *cacheStore) join(key string) (*flight, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.flights[key]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	s.flights[key] = f
	return f, true
}

func (s *cacheStore) land(key string, f *flight) {
	s.mu.Lock()
	if s.flights[key] == f {
		delete(s.flights, key)
	}
	s.mu.Unlock()
	close(f.done)
}

// stats for the API and metrics.
func (s *cacheStore) stats() (entries int, disk, mem int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len(), s.diskSize, s.memSize
}
