package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aymanbagabas/go-udiff"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/cqrs"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/reply"
)

// BlobsBucket is the object store config snapshots live in, named by
// their SHA-256.
const BlobsBucket = "BLOBS"

// waitWrite bounds how long a write waits to see itself in the state
// before it answers (it is stored either way).
const waitWrite = 5 * time.Second

func (m *Module) mount(h func(string, string, http.Handler)) {
	hf := func(p, perm string, f http.HandlerFunc) { h(p, perm, f) }
	hf("POST /api/v1/deployments", "deploy:write", m.record)
	hf("GET /api/v1/deployments", "deploy:read", m.listHandler)
	hf("POST /api/v1/deployments/heartbeat", "deploy:write", m.heartbeat)
	hf("GET /api/v1/deployments/services", "deploy:read", m.servicesHandler)
	hf("GET /api/v1/deployments/drift", "deploy:read", m.driftHandler)
	hf("GET /api/v1/deployments/dora", "deploy:read", m.doraHandler)
	hf("GET /api/v1/deployments/diff", "deploy:read", m.diffHandler)
	hf("GET /api/v1/deployments/configs/{hash}", "deploy:read", m.configHandler)
	hf("GET /api/v1/deployments/{service}/{env}/{id}", "deploy:read", m.getHandler)
}

func fieldErr(w http.ResponseWriter, err error) bool {
	var fe *FieldError
	if errors.As(err, &fe) {
		reply.Error(w, http.StatusBadRequest, fe.Field, fe.Error())
		return true
	}
	return false
}

// decode reads a JSON body of at most max bytes, refusing unknown fields.
func decode(w http.ResponseWriter, r *http.Request, max int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			reply.Error(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("body over %d bytes", max))
		case errors.As(err, &ute):
			reply.Error(w, http.StatusBadRequest, ute.Field, fmt.Sprintf("%s: want %s, got %s", ute.Field, ute.Type, ute.Value))
		default:
			field := ""
			if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				field = strings.Trim(f, `"`)
			}
			reply.Error(w, http.StatusBadRequest, field, "body: "+err.Error())
		}
		return false
	}
	return true
}

// Recorded is the answer to a record.
type Recorded struct {
	Deployment *Deployment `json:"deployment"`
	// Stored is false when the deployment already had this status (a
	// retried record): nothing was added.
	Stored bool `json:"stored"`
}

func (m *Module) record(w http.ResponseWriter, r *http.Request) {
	var rec Record
	if !decode(w, r, int64(m.cfg.MaxConfigBytes)*2+64<<10, &rec) {
		return
	}
	if err := rec.check(); fieldErr(w, err) {
		return
	}
	if rec.Config != nil {
		h, err := m.putConfig(r.Context(), *rec.Config)
		if fieldErr(w, err) {
			return
		} else if err != nil {
			m.unavailable(w, err)
			return
		}
		rec.ConfigHash = h
	} else if rec.ConfigHash != "" {
		if _, err := m.getConfig(r.Context(), rec.ConfigHash); errors.Is(err, jetstream.ErrObjectNotFound) {
			reply.Error(w, http.StatusBadRequest, "config_hash", "config_hash: no config stored under "+rec.ConfigHash+" (send config instead)")
			return
		} else if err != nil {
			m.unavailable(w, err)
			return
		}
	}
	if rec.At != nil && rec.At.After(time.Now().Add(time.Minute)) {
		reply.Error(w, http.StatusBadRequest, "at", "at: in the future")
		return
	}
	if rec.ID == "" {
		if rec.Status != Started && rec.Status != Succeeded && rec.Status != Failed {
			reply.Error(w, http.StatusBadRequest, "id", "id: required to change a recorded deployment's status")
			return
		}
		rec.ID = event.NewID()
	}
	by := ""
	if m.deps.Actor != nil {
		by = m.deps.Actor(r)
	}
	k := key{rec.Service, rec.Env}
	decider := cqrs.Decider[*state, Record]{
		Initial: &state{},
		Evolve:  func(s *state, e event.Event) (*state, error) { return s, s.fold(e) },
		Decide:  func(s *state, c Record) ([]event.Event, error) { return s.decide(c, by, time.Now().UTC()) },
	}
	var res cqrs.Result[*state]
	var err error
	for range 5 { // another writer of the same service/env: read again
		res, err = cqrs.Handle(r.Context(), m.store, aggType(k.service), k.env, rec, decider)
		var ce *cqrs.ConflictError
		if !errors.As(err, &ce) {
			break
		}
	}
	var re *cqrs.RejectedError
	switch {
	case errors.As(err, &re):
		field, _, _ := strings.Cut(re.Msg, ":")
		reply.Error(w, http.StatusConflict, field, re.Msg)
		return
	case err != nil:
		m.unavailable(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), waitWrite)
	m.waitFolded(ctx, k, res.Version)
	cancel()
	code := http.StatusCreated
	if len(res.Events) == 0 {
		code = http.StatusOK
	}
	reply.JSON(w, code, Recorded{Deployment: res.State.byID[rec.ID], Stored: len(res.Events) > 0})
}

func (m *Module) unavailable(w http.ResponseWriter, err error) {
	if errors.Is(err, bus.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		w.Header().Set("Retry-After", "1")
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	m.log.Warn("deploy request failed", "err", err)
	reply.Error(w, http.StatusInternalServerError, "", err.Error())
}

// objects opens the BLOBS object store once.
func (m *Module) objects(ctx context.Context) (jetstream.ObjectStore, error) {
	m.blobsMu.Lock()
	defer m.blobsMu.Unlock()
	if m.blobs != nil {
		return m.blobs, nil
	}
	os, err := m.deps.Bus.ObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: BlobsBucket,
		Description: "content-addressed blobs named by their SHA-256 (deployment config snapshots)", Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", bus.ErrUnavailable, err)
	}
	m.blobs = os
	return os, nil
}

// putConfig checks a config document and stores it once under its
// SHA-256, which it returns.
func (m *Module) putConfig(ctx context.Context, doc string) (string, error) {
	if len(doc) > int(m.cfg.MaxConfigBytes) {
		return "", &FieldError{"config", fmt.Sprintf("%d bytes, over deploy.max_config_bytes (%d)", len(doc), m.cfg.MaxConfigBytes)}
	}
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		return "", &FieldError{"config", "not a YAML or JSON document: " + err.Error()}
	}
	sum := sha256.Sum256([]byte(doc))
	h := hex.EncodeToString(sum[:])
	os, err := m.objects(ctx)
	if err != nil {
		return "", err
	}
	if _, err := os.GetInfo(ctx, h); err == nil {
		return h, nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", fmt.Errorf("%w: %v", bus.ErrUnavailable, err)
	}
	if _, err := os.PutString(ctx, h, doc); err != nil {
		return "", fmt.Errorf("%w: store config: %v", bus.ErrUnavailable, err)
	}
	return h, nil
}

func (m *Module) getConfig(ctx context.Context, hash string) (string, error) {
	os, err := m.objects(ctx)
	if err != nil {
		return "", err
	}
	return os.GetString(ctx, hash)
}

func (m *Module) heartbeat(w http.ResponseWriter, r *http.Request) {
	var h Heartbeat
	if !decode(w, r, 8<<10, &h) {
		return
	}
	if err := h.check(); fieldErr(w, err) {
		return
	}
	b, err := json.Marshal(h)
	if err != nil {
		m.unavailable(w, err)
		return
	}
	e := event.NewJSON("/ops/deploy/"+h.Host, HeartbeatType, b)
	e.Subject = h.Service + "/" + h.Env
	acks, err := m.deps.Bus.Publish(r.Context(), []event.Event{e})
	if err != nil {
		m.deps.Bus.WriteError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), waitWrite)
	m.waitHeartbeat(ctx, acks[0].Position.Seq)
	cancel()
	reply.JSON(w, http.StatusAccepted, map[string]any{"id": e.ID, "time": e.Time})
}

// timeRange reads from/to (RFC 3339) or since (a duration back from now,
// 30d by default).
func timeRange(r *http.Request, def time.Duration) (time.Time, time.Time, error) {
	q := r.URL.Query()
	to := time.Now().UTC().Add(time.Second)
	from := to.Add(-def)
	if s := q.Get("since"); s != "" {
		d, err := config.ParseDuration(s)
		if err != nil || d <= 0 {
			return from, to, &FieldError{"since", fmt.Sprintf("want a duration such as 30d or 12h, got %q", s)}
		}
		from = to.Add(-d)
	}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		if s := q.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return from, to, &FieldError{f.name, fmt.Sprintf("want an RFC 3339 time, got %q", s)}
			}
			*f.t = t.UTC()
		}
	}
	if !from.Before(to) {
		return from, to, &FieldError{"from", "must be before to"}
	}
	return from, to, nil
}

// filters reads service and env, canonicalised, either may be empty.
func filters(r *http.Request) (string, string, error) {
	q := r.URL.Query()
	var out [2]string
	for i, f := range []string{"service", "env"} {
		if v := q.Get(f); v != "" {
			c, err := canonName(f, v)
			if err != nil {
				return "", "", err
			}
			out[i] = c
		}
	}
	return out[0], out[1], nil
}

func wantsCSV(r *http.Request) bool {
	return r.URL.Query().Get("format") == "csv" || strings.Contains(r.Header.Get("Accept"), "text/csv")
}

func (m *Module) listHandler(w http.ResponseWriter, r *http.Request) {
	service, env, err := filters(r)
	if fieldErr(w, err) {
		return
	}
	from, to, err := timeRange(r, 3650*24*time.Hour)
	if fieldErr(w, err) {
		return
	}
	status := r.URL.Query().Get("status")
	switch status {
	case "", Started, Succeeded, Failed, RolledBack:
	default:
		reply.Error(w, http.StatusBadRequest, "status", fmt.Sprintf("status: want started, succeeded, failed or rolled_back, got %q", status))
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 10000 {
			reply.Error(w, http.StatusBadRequest, "limit", "limit: want 1 to 10000")
			return
		}
	}
	m.mu.RLock()
	ds := m.list(service, env, status, from, to, limit)
	out := make([]*Deployment, len(ds))
	for i, d := range ds {
		out[i] = brief(d)
	}
	m.mu.RUnlock()
	if wantsCSV(r) {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"at", "service", "env", "version", "status", "commit", "who", "hosts", "config_hash", "id"})
		for _, d := range out {
			_ = cw.Write([]string{d.At.Format(time.RFC3339), d.Service, d.Env, d.Version, d.Status, d.Commit, d.Who,
				strings.Join(d.Hosts, " "), d.ConfigHash, d.ID})
		}
		cw.Flush()
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"deployments": out})
}

func (m *Module) getHandler(w http.ResponseWriter, r *http.Request) {
	service, err := canonName("service", r.PathValue("service"))
	if fieldErr(w, err) {
		return
	}
	env, err := canonName("env", r.PathValue("env"))
	if fieldErr(w, err) {
		return
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var d *Deployment
	if st := m.envs[key{service, env}]; st != nil {
		d = st.byID[r.PathValue("id")]
	}
	if d == nil {
		reply.Error(w, http.StatusNotFound, "id", "no deployment "+r.PathValue("id")+" of "+service+"/"+env)
		return
	}
	reply.JSON(w, http.StatusOK, d)
}

func (m *Module) servicesHandler(w http.ResponseWriter, r *http.Request) {
	service, env, err := filters(r)
	if fieldErr(w, err) {
		return
	}
	m.mu.RLock()
	out := m.services(service, env, time.Now())
	m.mu.RUnlock()
	if out == nil {
		out = []Service{}
	}
	reply.JSON(w, http.StatusOK, map[string]any{"services": out})
}

// driftHandler lists only the hosts that drift, per service/environment
// with any.
func (m *Module) driftHandler(w http.ResponseWriter, r *http.Request) {
	service, env, err := filters(r)
	if fieldErr(w, err) {
		return
	}
	m.mu.RLock()
	all := m.services(service, env, time.Now())
	m.mu.RUnlock()
	out := []Service{}
	for _, s := range all {
		if s.Drifted == 0 {
			continue
		}
		hosts := s.Hosts[:0]
		for _, h := range s.Hosts {
			if len(h.Drift) > 0 {
				hosts = append(hosts, h)
			}
		}
		s.Hosts = hosts
		out = append(out, s)
	}
	reply.JSON(w, http.StatusOK, map[string]any{"drift": out})
}

func (m *Module) doraHandler(w http.ResponseWriter, r *http.Request) {
	service, env, err := filters(r)
	if fieldErr(w, err) {
		return
	}
	from, to, err := timeRange(r, 30*24*time.Hour)
	if fieldErr(w, err) {
		return
	}
	m.mu.RLock()
	out := m.dora(service, env, from, to)
	m.mu.RUnlock()
	reply.JSON(w, http.StatusOK, out)
}

// find looks a deployment up by "id" or "service/env/id".
func (m *Module) find(field, ref string) (*Deployment, error) {
	if ref == "" {
		return nil, &FieldError{field, "required: a deployment id, or service/env/id"}
	}
	parts := strings.Split(ref, "/")
	var hits []*Deployment
	switch len(parts) {
	case 1:
		for _, st := range m.envs {
			if d := st.byID[ref]; d != nil {
				hits = append(hits, d)
			}
		}
	case 3:
		if st := m.envs[key{strings.ToLower(parts[0]), strings.ToLower(parts[1])}]; st != nil {
			if d := st.byID[parts[2]]; d != nil {
				hits = append(hits, d)
			}
		}
	default:
		return nil, &FieldError{field, fmt.Sprintf("want a deployment id or service/env/id, got %q", ref)}
	}
	switch len(hits) {
	case 0:
		return nil, &FieldError{field, fmt.Sprintf("no deployment %q", ref)}
	case 1:
		return hits[0], nil
	}
	return nil, &FieldError{field, fmt.Sprintf("%q names deployments of %d services: write service/env/id", ref, len(hits))}
}

// diffHandler answers the unified diff of two deployments' configs.
func (m *Module) diffHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	m.mu.RLock()
	a, errA := m.find("from", q.Get("from"))
	b, errB := m.find("to", q.Get("to"))
	m.mu.RUnlock()
	if fieldErr(w, errA) || fieldErr(w, errB) {
		return
	}
	docs := make([]string, 2)
	for i, d := range []*Deployment{a, b} {
		if d.ConfigHash == "" {
			continue
		}
		s, err := m.getConfig(r.Context(), d.ConfigHash)
		if err != nil {
			m.unavailable(w, err)
			return
		}
		docs[i] = s
	}
	label := func(d *Deployment) string { return d.Service + "/" + d.Env + "@" + d.Version + " (" + d.ID + ")" }
	diff := udiff.Unified(label(a), label(b), docs[0], docs[1])
	if q.Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		reply.JSON(w, http.StatusOK, map[string]any{"from": brief(a), "to": brief(b), "same": a.ConfigHash == b.ConfigHash, "diff": diff})
		return
	}
	w.Header().Set("Content-Type", "text/x-diff; charset=utf-8")
	_, _ = io.WriteString(w, diff)
}

func (m *Module) configHandler(w http.ResponseWriter, r *http.Request) {
	h := r.PathValue("hash")
	if !hashRE.MatchString(h) {
		reply.Error(w, http.StatusBadRequest, "hash", "hash: want 64 lowercase hex digits")
		return
	}
	s, err := m.getConfig(r.Context(), h)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		reply.Error(w, http.StatusNotFound, "hash", "no config stored under "+h)
		return
	}
	if err != nil {
		m.unavailable(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("ETag", `"`+h+`"`)
	_, _ = io.WriteString(w, s)
}
