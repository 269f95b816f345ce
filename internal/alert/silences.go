package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/alertmanager/silence"
	pb "github.com/prometheus/alertmanager/silence/silencepb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/reply"
)

// Silence is a silence as the API shows it.
type Silence struct {
	ID        string    `json:"id"`
	Matchers  string    `json:"matchers"` // as Alertmanager writes them: {alertname="X",severity=~"page|crit"}
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment"`
	State     string    `json:"state"` // pending, active, expired
}

// NewSilence is the body of POST /api/v1/alerts/silences.
type NewSilence struct {
	Matchers string `json:"matchers"`
	// For is how long from now (Go duration: 2h, 30m); EndsAt an end.
	For     string     `json:"for,omitempty"`
	EndsAt  *time.Time `json:"ends_at,omitempty"`
	Comment string     `json:"comment"`
}

// matcherOps are the matcher types as Alertmanager writes them.
var matcherOps = map[pb.Matcher_Type]string{pb.Matcher_EQUAL: "=", pb.Matcher_NOT_EQUAL: "!=", pb.Matcher_REGEXP: "=~", pb.Matcher_NOT_REGEXP: "!~"}

// maxSilence bounds how long a silence can last from now.
const maxSilence = 366 * 24 * time.Hour

func (m *Module) routerOr503(w http.ResponseWriter) *router {
	m.mu.Lock()
	rt := m.router
	m.mu.Unlock()
	if rt == nil {
		if m.cfg.AlertmanagerConfig == "" {
			reply.Error(w, http.StatusConflict, "", errNoRouting.Error())
		} else {
			reply.Error(w, http.StatusServiceUnavailable, "", "alert module starting")
		}
	}
	return rt
}

func toSilence(s *pb.Silence, now time.Time) Silence {
	var ms []string
	var all []*pb.Matcher
	for _, set := range s.MatcherSets {
		all = append(all, set.Matchers...)
	}
	all = append(all, s.Matchers...) // silences made before matcher sets
	for _, mt := range all {
		ms = append(ms, fmt.Sprintf("%s%s%q", mt.Name, matcherOps[mt.Type], mt.Pattern))
	}
	out := Silence{ID: s.Id, Matchers: "{" + strings.Join(ms, ",") + "}", StartsAt: s.StartsAt.AsTime(), EndsAt: s.EndsAt.AsTime(),
		CreatedBy: s.CreatedBy, Comment: s.Comment, State: "active"}
	switch {
	case now.Before(out.StartsAt):
		out.State = "pending"
	case !now.Before(out.EndsAt):
		out.State = "expired"
	}
	return out
}

func (m *Module) listSilences(w http.ResponseWriter, r *http.Request) {
	rt := m.routerOr503(w)
	if rt == nil {
		return
	}
	sils, _, err := rt.silences.Query(r.Context())
	if err != nil {
		reply.Error(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	now := time.Now()
	out := make([]Silence, 0, len(sils))
	for _, s := range sils {
		if st := toSilence(s, now); r.URL.Query().Get("state") == "" || r.URL.Query().Get("state") == st.State {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].EndsAt.After(out[j].EndsAt) })
	reply.JSON(w, http.StatusOK, map[string]any{"silences": out})
}

// parseSilence checks a new silence; the error names the field.
func parseSilence(in NewSilence, now time.Time) (*pb.Silence, string, error) {
	ms, err := amlabels.ParseMatchers(in.Matchers)
	if err != nil {
		return nil, "matchers", fmt.Errorf("matchers: %w", err)
	}
	if len(ms) == 0 {
		return nil, "matchers", errors.New("matchers: want at least one, e.g. alertname=\"HighLatency\"")
	}
	empty := true
	set := &pb.MatcherSet{}
	for _, mt := range ms {
		t := map[amlabels.MatchType]pb.Matcher_Type{amlabels.MatchEqual: pb.Matcher_EQUAL, amlabels.MatchNotEqual: pb.Matcher_NOT_EQUAL,
			amlabels.MatchRegexp: pb.Matcher_REGEXP, amlabels.MatchNotRegexp: pb.Matcher_NOT_REGEXP}[mt.Type]
		set.Matchers = append(set.Matchers, &pb.Matcher{Type: t, Name: mt.Name, Pattern: mt.Value})
		if !mt.Matches("") {
			empty = false
		}
	}
	if empty {
		return nil, "matchers", errors.New("matchers: they all match an empty label, so the silence would mute every alert")
	}
	var end time.Time
	switch {
	case in.For != "" && in.EndsAt != nil:
		return nil, "for", errors.New("for: give for or ends_at, not both")
	case in.For != "":
		d, err := time.ParseDuration(in.For)
		if err != nil || d <= 0 || d > maxSilence {
			return nil, "for", fmt.Errorf("for: want a duration from 1s to %s, got %q", maxSilence, in.For)
		}
		end = now.Add(d)
	case in.EndsAt != nil:
		end = *in.EndsAt
		if !end.After(now) || end.Sub(now) > maxSilence {
			return nil, "ends_at", fmt.Errorf("ends_at: want a time in the next %s", maxSilence)
		}
	default:
		return nil, "for", errors.New("for: how long the silence lasts (2h, 30m), or ends_at")
	}
	if len(in.Comment) > 1024 {
		return nil, "comment", errors.New("comment: at most 1024 bytes")
	}
	return &pb.Silence{MatcherSets: []*pb.MatcherSet{set}, StartsAt: timestamppb.New(now), EndsAt: timestamppb.New(end),
		Comment: in.Comment, Annotations: map[string]string{}}, "", nil
}

func (m *Module) createSilence(w http.ResponseWriter, r *http.Request) {
	rt := m.routerOr503(w)
	if rt == nil {
		return
	}
	var in NewSilence
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		reply.Error(w, http.StatusBadRequest, "", "body: want JSON {matchers, for or ends_at, comment}: "+err.Error())
		return
	}
	sil, field, err := parseSilence(in, time.Now())
	if err != nil {
		reply.Error(w, http.StatusBadRequest, field, err.Error())
		return
	}
	sil.CreatedBy = "unknown"
	if who := identity.FromContext(r.Context()); who != nil {
		sil.CreatedBy = who.User
	}
	if err := rt.silences.Set(r.Context(), sil); err != nil {
		reply.Error(w, http.StatusBadRequest, "matchers", err.Error())
		return
	}
	if err := rt.saveSilences(); err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", "silence not saved: "+err.Error())
		return
	}
	reply.JSON(w, http.StatusCreated, map[string]any{"silence": toSilence(sil, time.Now())})
}

func (m *Module) expireSilence(w http.ResponseWriter, r *http.Request) {
	rt := m.routerOr503(w)
	if rt == nil {
		return
	}
	id := r.PathValue("id")
	if err := rt.silences.Expire(r.Context(), id); err != nil {
		if errors.Is(err, silence.ErrNotFound) {
			reply.Error(w, http.StatusNotFound, "id", "no silence "+id)
		} else {
			reply.Error(w, http.StatusConflict, "id", err.Error())
		}
		return
	}
	if err := rt.saveSilences(); err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", "expiry not saved: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
