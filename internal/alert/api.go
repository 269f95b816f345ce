package alert

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/rules"

	"github.com/opsgraph/ops/internal/reply"
)

func (m *Module) mount(h func(string, string, http.Handler)) {
	h("GET /api/v1/alerts", "alert:read", http.HandlerFunc(m.alertsHandler))
	h("GET /api/v1/alerts/rules", "alert:read", http.HandlerFunc(m.rulesHandler))
	h("PUT /api/v1/alerts/rules/{name}", "alert:write", http.HandlerFunc(m.putRules))
	h("DELETE /api/v1/alerts/rules/{name}", "alert:write", http.HandlerFunc(m.deleteRules))
	h("POST /api/v1/alerts/rules/check", "alert:read", http.HandlerFunc(m.checkRules))
	h("GET /api/v1/alerts/silences", "alert:read", http.HandlerFunc(m.listSilences))
	h("POST /api/v1/alerts/silences", "alert:write", http.HandlerFunc(m.createSilence))
	h("DELETE /api/v1/alerts/silences/{id}", "alert:write", http.HandlerFunc(m.expireSilence))
}

// Active is an alert that is pending or firing now.
type Active struct {
	Alert       string            `json:"alert"`
	State       string            `json:"state"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Value       float64           `json:"value"`
	ActiveAt    time.Time         `json:"active_at"`
	FiredAt     *time.Time        `json:"fired_at,omitempty"`
	Group       string            `json:"group"`
	File        string            `json:"file"`
}

func (m *Module) alertsHandler(w http.ResponseWriter, r *http.Request) {
	reply.JSON(w, http.StatusOK, map[string]any{"alerts": m.active()})
}

// active lists the pending and firing alerts, by name then age.
func (m *Module) active() []Active {
	out := []Active{}
	if m.mgr != nil {
		for _, g := range m.mgr.RuleGroups() {
			for _, rl := range g.Rules() {
				ar, ok := rl.(*rules.AlertingRule)
				if !ok {
					continue
				}
				for _, a := range ar.ActiveAlerts() {
					x := Active{Alert: ar.Name(), State: a.State.String(), Labels: a.Labels.Map(), Annotations: a.Annotations.Map(),
						Value: a.Value, ActiveAt: a.ActiveAt.UTC(), Group: g.Name(), File: g.File()}
					if !a.FiredAt.IsZero() {
						t := a.FiredAt.UTC()
						x.FiredAt = &t
					}
					out = append(out, x)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Alert != out[j].Alert {
			return out[i].Alert < out[j].Alert
		}
		return out[i].ActiveAt.Before(out[j].ActiveAt)
	})
	return out
}

// RuleInfo is one rule's state.
type RuleInfo struct {
	Name      string    `json:"name"`
	Type      string    `json:"type"` // alerting or recording
	Query     string    `json:"query"`
	Health    string    `json:"health"`
	LastError string    `json:"last_error,omitempty"`
	State     string    `json:"state,omitempty"`
	Active    int       `json:"active,omitempty"`
	LastEval  time.Time `json:"last_evaluation"`
}

// GroupInfo is one group's state.
type GroupInfo struct {
	Name           string     `json:"name"`
	File           string     `json:"file"`
	Interval       float64    `json:"interval"`
	EvaluationTime float64    `json:"evaluation_time"`
	LastEvaluation time.Time  `json:"last_evaluation"`
	Rules          []RuleInfo `json:"rules"`
}

func (m *Module) rulesHandler(w http.ResponseWriter, r *http.Request) {
	out := []GroupInfo{}
	if m.mgr != nil {
		for _, g := range m.mgr.RuleGroups() {
			gi := GroupInfo{Name: g.Name(), File: g.File(), Interval: g.Interval().Seconds(),
				EvaluationTime: g.GetEvaluationTime().Seconds(), LastEvaluation: g.GetLastEvaluation().UTC(), Rules: []RuleInfo{}}
			for _, rl := range g.Rules() {
				ri := RuleInfo{Name: rl.Name(), Type: "recording", Query: rl.Query().String(), Health: string(rl.Health()),
					LastEval: rl.GetEvaluationTimestamp().UTC()}
				if err := rl.LastError(); err != nil {
					ri.LastError = err.Error()
				}
				if ar, ok := rl.(*rules.AlertingRule); ok {
					ri.Type, ri.State, ri.Active = "alerting", ar.State().String(), ar.ActiveAlertsCount()
				}
				gi.Rules = append(gi.Rules, ri)
			}
			out = append(out, gi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File+out[i].Name < out[j].File+out[j].Name })
	reply.JSON(w, http.StatusOK, map[string]any{"groups": out})
}

var groupNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// parseRules checks a rule file: Prometheus's own checks (PromQL, names,
// durations, templates), each error naming the rule and its position.
func (m *Module) parseRules(b []byte) (*rulefmt.RuleGroups, error) {
	rgs, errs := rulefmt.Parse(b, false, model.UTF8Validation, m.parser, m.log)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	for _, g := range rgs.Groups {
		if g.Interval != 0 && time.Duration(g.Interval) < MinInterval {
			return nil, &fieldError{field: fmt.Sprintf("groups[%s].interval", g.Name), msg: fmt.Sprintf("group %q: interval %s is under %s", g.Name, g.Interval, MinInterval)}
		}
	}
	return rgs, nil
}

// MinInterval is the shortest evaluation interval a group may ask for.
const MinInterval = time.Second

type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.msg }

// ruleField names the rule an error is about, as the API's field.
func ruleField(err error) string {
	if fe, ok := err.(*fieldError); ok {
		return fe.field
	}
	var re *rulefmt.Error
	if errors.As(err, &re) {
		if re.RuleName != "" || re.Rule > 0 {
			return fmt.Sprintf("groups[%s].rules[%d]", re.Group, re.Rule-1)
		}
		return fmt.Sprintf("groups[%s]", re.Group)
	}
	return "groups"
}

const maxRulesBody = 1 << 20

func (m *Module) readRules(w http.ResponseWriter, r *http.Request) (*rulefmt.RuleGroups, []byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRulesBody))
	if err != nil {
		reply.Error(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("body over %d bytes", maxRulesBody))
		return nil, nil, false
	}
	rgs, err := m.parseRules(b)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, ruleField(err), err.Error())
		return nil, nil, false
	}
	return rgs, b, true
}

// checkRules validates a rule file without storing it (ops alerts check).
func (m *Module) checkRules(w http.ResponseWriter, r *http.Request) {
	rgs, _, ok := m.readRules(w, r)
	if !ok {
		return
	}
	n := 0
	for _, g := range rgs.Groups {
		n += len(g.Rules)
	}
	reply.JSON(w, http.StatusOK, map[string]any{"groups": len(rgs.Groups), "rules": n})
}

// putRules stores a rule file of one group named as the path says.
func (m *Module) putRules(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !groupNameRE.MatchString(name) {
		reply.Error(w, http.StatusBadRequest, "name", "name: want letters, digits, - and _ (up to 63)")
		return
	}
	rgs, b, ok := m.readRules(w, r)
	if !ok {
		return
	}
	if len(rgs.Groups) != 1 || rgs.Groups[0].Name != name {
		reply.Error(w, http.StatusBadRequest, "groups", fmt.Sprintf("groups: want exactly one group, named %q as in the path", name))
		return
	}
	if m.kv == nil {
		reply.Error(w, http.StatusServiceUnavailable, "", "alert module starting")
		return
	}
	if _, err := m.kv.Put(r.Context(), name, b); err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"group": name, "rules": len(rgs.Groups[0].Rules)})
}

func (m *Module) deleteRules(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !groupNameRE.MatchString(name) {
		reply.Error(w, http.StatusBadRequest, "name", "name: want letters, digits, - and _ (up to 63)")
		return
	}
	if m.kv == nil {
		reply.Error(w, http.StatusServiceUnavailable, "", "alert module starting")
		return
	}
	if _, err := m.kv.Get(r.Context(), name); err != nil {
		reply.Error(w, http.StatusNotFound, "name", "no rule group "+name+" made through the API")
		return
	}
	if err := m.kv.Delete(r.Context(), name); err != nil {
		reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
