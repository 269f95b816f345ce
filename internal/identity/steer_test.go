package identity_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/testutil"
)

// publish posts CloudEvents JSON with token and decodes the answer.
func publish(t *testing.T, base, token, body string) (int, errBody) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	ct := "application/cloudevents+json"
	if strings.HasPrefix(strings.TrimSpace(body), "[") {
		ct = "application/cloudevents-batch+json"
	}
	req.Header.Set("Content-Type", ct)
	resp, err := testutil.Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e errBody
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

func ce(id, typ, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/test","type":%q,"data":%s}`, id, typ, data)
}

func count(t *testing.T, base, token, subject string) int {
	t.Helper()
	var p struct{ Events []json.RawMessage }
	call(t, nil, "GET", base+"/api/v1/events?limit=1000&subject="+subject, token, nil, &p)
	return len(p.Events)
}

// TestReservedEventsNeedTheirPermission: an editor (events:write,
// graph:write) cannot steer Ops by publishing on its reserved domains,
// directly or through a processor it creates; an admin can.
func TestReservedEventsNeedTheirPermission(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	admin := r.Token
	var tok struct{ Token string }
	call(t, nil, "POST", r.URL+"/api/v1/tokens", admin, map[string]string{"name": "ci", "role": "editor"}, &tok)
	editor := tok.Token
	for _, c := range []struct{ body, field string }{
		{ce("p1", "policy.set", `{"maintenance":"*","action":"on"}`), "type"},
		{ce("p2", "policy.clear", `{"user":"mallory"}`), "type"},
		{ce("a1", "auth.login", `{"user":"admin"}`), "type"},
		{ce("v1", "view.failed_logins_by_user.updated", `{"new":{"failures":99}}`), "type"},
		{ce("d1", "deadletter.x", `{}`), "type"},
		{"[" + ce("ok1", "shop.order", `{}`) + "," + ce("p3", "policy.set", `{"user":"bob","action":"lock"}`) + "]", "[1].type"},
	} {
		if code, e := publish(t, r.URL, editor, c.body); code != 403 || e.Field != c.field || !strings.Contains(e.Error, "policy:write") && !strings.Contains(e.Error, ":write") {
			t.Errorf("editor %s: %d %+v", c.body, code, e)
		}
	}
	// Nothing of a refused batch is stored, and no policy came of it.
	for _, subj := range []string{"ev.shop.>", "ev.policy.>", "ev.view.>", "ev.deadletter.>", "ev.auth.login"} {
		if n := count(t, r.URL, admin, subj); n != 0 {
			t.Fatalf("%d %s events stored from refused publishes", n, subj)
		}
	}
	if code, _ := publish(t, r.URL, editor, ce("ok2", "shop.order", `{}`)); code != 200 {
		t.Fatalf("editor, own domain: %d", code)
	}
	// An admin holds policy:write: the event is applied.
	if code, e := publish(t, r.URL, admin, ce("p4", "policy.set", `{"user":"mallory","action":"lock","for":"1h"}`)); code != 200 {
		t.Fatalf("admin policy.set: %d %+v", code, e)
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		var pol struct{ Entries []map[string]any }
		call(t, nil, "GET", r.URL+"/api/v1/policy", admin, nil, &pol)
		if len(pol.Entries) != 1 || pol.Entries[0]["subject"] != "mallory" {
			return fmt.Errorf("policy %v", pol.Entries)
		}
		return nil
	})
	// A processor the editor creates may not publish there either...
	var e errBody
	resp := call(t, nil, "PUT", r.URL+"/api/v1/processors/steer", editor, map[string]any{"from": "ev.shop.>", "to": "ev.policy.set"}, &e)
	if resp.StatusCode != 403 || e.Field != "to" {
		t.Fatalf("editor's processor to ev.policy.set: %d %+v", resp.StatusCode, e)
	}
	// ...nor pick the domain from the data it reads: that goes to dead
	// letters.
	resp = call(t, nil, "PUT", r.URL+"/api/v1/processors/route", editor, map[string]any{"from": "ev.shop.kind", "to": "ev.${! this.data.kind }.set"}, &e)
	if resp.StatusCode != 201 {
		t.Fatalf("editor's processor with a computed domain: %d %+v", resp.StatusCode, e)
	}
	time.Sleep(300 * time.Millisecond) // the processor starts from new events
	if code, _ := publish(t, r.URL, editor, ce("k1", "shop.kind", `{"kind":"policy","user":"admin","action":"lock"}`)); code != 200 {
		t.Fatal(code)
	}
	if code, _ := publish(t, r.URL, editor, ce("k2", "shop.kind", `{"kind":"orders"}`)); code != 200 {
		t.Fatal(code)
	}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := count(t, r.URL, admin, "ev.deadletter.route"); n != 1 {
			return fmt.Errorf("%d dead letters", n)
		}
		if n := count(t, r.URL, admin, "ev.orders.set"); n != 1 {
			return fmt.Errorf("%d ev.orders.set", n)
		}
		return nil
	})
	if n := count(t, r.URL, admin, "ev.policy.>"); n != 1 {
		t.Fatalf("%d policy events; only the admin's", n)
	}
	// An admin may create the processor.
	if resp := call(t, nil, "PUT", r.URL+"/api/v1/processors/steer", admin, map[string]any{"from": "ev.shop.>", "to": "ev.policy.set"}, nil); resp.StatusCode != 201 {
		t.Fatalf("admin's processor: %d", resp.StatusCode)
	}
}

// loginsChecked is how many passwords the providers checked (invalid or
// ok), from /metrics.
func loginsChecked(t *testing.T, base, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := testutil.Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "ops_auth_logins_total{provider=\"local\"") {
			var v float64
			fmt.Sscanf(l[strings.LastIndexByte(l, ' ')+1:], "%g", &v)
			n += int(v)
		}
	}
	return n
}

// TestLoginThrottleDefault: with the default config a guesser gets a few
// passwords checked, then 429 without any check; the right password is
// refused too until the time is up, and other users are not affected.
func TestLoginThrottleDefault(t *testing.T) {
	hash, _ := identity.HashPassword("correct horse")
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Identity.Users = []config.User{
			{Name: "frank", PasswordHash: hash, Roles: config.Strings{"viewer"}},
			{Name: "grace", PasswordHash: hash, Roles: config.Strings{"viewer"}},
			{Name: "admin", PasswordHash: hash, Roles: config.Strings{"admin"}},
		}
	})
	ac := jar(t)
	login(t, ac, r.URL, "admin", "correct horse")
	var tok struct{ Token string }
	_, csrf := login(t, ac, r.URL, "admin", "correct horse")
	call(t, ac, "POST", r.URL+"/api/v1/tokens", "", map[string]string{"name": "m", "role": "admin"}, &tok, "X-CSRF-Token", csrf)
	before := loginsChecked(t, r.URL, tok.Token)
	limit := config.Default().Identity.Lockout.User.Failures
	codes := map[int]int{}
	for i := 0; i < 3*limit; i++ {
		code, _ := login(t, jar(t), r.URL, "Frank", fmt.Sprintf("guess %d", i)) // case does not buy more guesses
		codes[code]++
	}
	if codes[401] != limit || codes[429] != 2*limit {
		t.Fatalf("answers to %d guesses: %v, want %d checked (401) and the rest 429", 3*limit, codes, limit)
	}
	if n := loginsChecked(t, r.URL, tok.Token) - before; n != limit {
		t.Fatalf("%d passwords checked, want %d", n, limit)
	}
	var e errBody
	resp := call(t, nil, "POST", r.URL+"/api/v1/login", "", map[string]string{"user": "frank", "password": "correct horse"}, &e)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || e.Field != "user" {
		t.Fatalf("right password while throttled: %d %q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), e)
	}
	if code, _ := login(t, jar(t), r.URL, "grace", "correct horse"); code != 200 {
		t.Fatalf("grace: %d", code)
	}
	// An admin lifting frank's lock lifts the throttle too.
	if resp := call(t, nil, "DELETE", r.URL+"/api/v1/policy/user/frank", tok.Token, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("clear: %d", resp.StatusCode)
	}
	if code, _ := login(t, jar(t), r.URL, "frank", "correct horse"); code != 200 {
		t.Fatalf("frank after the admin cleared: %d", code)
	}
}

// TestBruteForceBurst: with examples/bruteforce.yaml (and the built-in
// throttle out of the way), a parallel burst of wrong passwords gets
// exactly the graph's threshold checked: the lock the graph writes is in
// force before the next attempt is looked at.
func TestBruteForceBurst(t *testing.T) {
	raw, err := os.ReadFile("../../examples/bruteforce.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := identity.HashPassword("correct horse")
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Views, c.Processors = ex.Views, ex.Processors
		c.Identity.Lockout.User.Failures, c.Identity.Lockout.Address.Failures = 0, 0
		// What is tested is that the lock lands before the next attempt,
		// not how fast: a slow CI machine gets time.
		c.Identity.Lockout.Settle = config.Duration(20 * time.Second)
		c.Identity.Users = []config.User{{Name: "frank", PasswordHash: hash, Roles: config.Strings{"viewer"}}}
	})
	const burst = 30
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	start := make(chan struct{})
	for i := 0; i < burst; i++ {
		wg.Go(func() {
			<-start
			b, _ := json.Marshal(map[string]string{"user": "frank", "password": fmt.Sprint("guess", i)})
			resp, err := testutil.Anonymous.Post(r.URL+"/api/v1/login", "application/json", bytes.NewReader(b))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	// The example locks at 5 failures within 10 minutes.
	if codes[401] != 5 || codes[403] != burst-5 {
		t.Fatalf("a burst of %d: %v, want 5 checked (401) and %d refused as locked (403)", burst, codes, burst-5)
	}
}
