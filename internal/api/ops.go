package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/opsgraph/ops/internal/logging"
)

func (m *Module) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (m *Module) readyz(w http.ResponseWriter, r *http.Request) {
	ready, modules := m.deps.Ready()
	code, status := http.StatusOK, "ready"
	if !ready {
		code, status = http.StatusServiceUnavailable, "not ready"
	} else if err := m.deps.Bus.Healthy(); err != nil {
		code, status = http.StatusServiceUnavailable, err.Error()
	} else if err := m.deps.Bus.Space(); err != nil {
		// Up, but not taking writes: a load balancer should send them
		// elsewhere.
		code, status = http.StatusServiceUnavailable, "not ready for writes: "+err.Error()
	}
	writeJSON(w, code, map[string]any{"status": status, "modules": modules})
}

func (m *Module) getStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, m.deps.Status())
}

func (m *Module) getStreams(w http.ResponseWriter, r *http.Request) {
	st, err := m.deps.Bus.Streams(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	if wantsCSV(r) {
		rows := [][]string{{"name", "subjects", "messages", "bytes", "first_seq", "last_seq", "last_time", "consumers", "max_age", "max_bytes", "replicas"}}
		for _, s := range st {
			rows = append(rows, []string{s.Name, join(s.Subjects), u64(s.Messages), u64(s.Bytes), u64(s.FirstSeq), u64(s.LastSeq),
				s.LastTime.Format(time.RFC3339), itoa(s.Consumers), s.MaxAge, i64(s.MaxBytes), itoa(s.Replicas)})
		}
		writeCSV(w, rows)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"streams": st})
}

func (m *Module) getLogLevels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"levels": m.deps.Logs.All()})
}

func (m *Module) putLogLevel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Module string `json:"module"`
		Level  string `json:"level"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body", "want {\"module\": \"bus\", \"level\": \"debug\"}: "+err.Error())
		return
	}
	if req.Module == "" {
		writeError(w, http.StatusBadRequest, "module", "required")
		return
	}
	if err := m.deps.Logs.Update(req.Module, req.Level); err != nil {
		field := "level"
		if errors.Is(err, logging.ErrUnknownModule) {
			field = "module"
		}
		writeError(w, http.StatusBadRequest, field, err.Error())
		return
	}
	m.log.Info("log level changed", "target", req.Module, "level", req.Level)
	writeJSON(w, http.StatusOK, map[string]any{"levels": m.deps.Logs.All()})
}

func (m *Module) getGraph(w http.ResponseWriter, r *http.Request) {
	if m.deps.Graph == nil {
		writeError(w, http.StatusNotFound, "", "no graph")
		return
	}
	b, err := m.deps.Graph()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
