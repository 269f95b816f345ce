package deploy

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzRecord: any body either fails with a field error or gives a record
// whose names are one subject token each (the aggregate's subject is made
// of them), and a decision on it never panics.
func FuzzRecord(f *testing.F) {
	f.Add([]byte(`{"service":"api","env":"prod","version":"1.4.2","hosts":["web-1","WEB-1."]}`))
	f.Add([]byte(`{"id":"d1","service":"Api","env":"prod","version":"1","status":"rolled_back"}`))
	f.Add([]byte(`{"service":"a.b","env":"*","version":"\u0000"}`))
	f.Add([]byte(`{"service":"api","env":"prod","version":"1","config_hash":"00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if json.Unmarshal(b, &r) != nil {
			return
		}
		if err := r.check(); err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("not a field error: %T %v", err, err)
			}
			return
		}
		for _, s := range []string{r.Service, r.Env} {
			if !nameRE.MatchString(s) {
				t.Fatalf("name %q passed", s)
			}
		}
		if r.ID == "" {
			r.ID = "x"
		}
		st := &state{}
		evs, err := st.decide(r, "u", time.Unix(0, 0))
		if err != nil {
			return
		}
		for _, e := range evs {
			if err := st.fold(e); err != nil {
				t.Fatalf("fold of a decided event: %v", err)
			}
		}
	})
}

// FuzzHeartbeat: what passes the check names a host and a version.
func FuzzHeartbeat(f *testing.F) {
	f.Add([]byte(`{"service":"api","env":"prod","host":"web-1","version":"1","every":30}`))
	f.Add([]byte(`{"service":"api","env":"prod","host":"-x","version":" "}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Heartbeat
		if json.Unmarshal(b, &h) != nil {
			return
		}
		if err := h.check(); err != nil {
			return
		}
		if !hostRE.MatchString(h.Host) || h.Version == "" || h.Every < 0 {
			t.Fatalf("passed: %+v", h)
		}
	})
}
