package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/testutil"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// opsBinary builds the real binary once per test run.
func opsBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ops-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ops")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type proc struct {
	cmd   *exec.Cmd
	url   string
	token string // the first-run admin token
	logs  *bytes.Buffer
	mu    *sync.Mutex
	eof   chan struct{} // closed when the process's stderr is fully read
}

var listenRE = regexp.MustCompile(`msg=listening module=api addr=(\S+)`)

// startOps runs `ops serve` as a child process and waits until it is ready.
func startOps(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	return startOpsWith(t, opsBinary(t), dataDir, extra...)
}

// startOpsWith is startOps with another build of the binary.
func startOpsWith(t *testing.T, bin, dataDir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"serve", "--data-dir", dataDir, "--http-listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "OPS_LOG_LEVEL=info")
	// Our own pipe, not StderrPipe: Wait must not close it before the last
	// log lines are read.
	stderr, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p := &proc{cmd: cmd, logs: &bytes.Buffer{}, mu: &sync.Mutex{}, eof: make(chan struct{})}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		defer close(p.eof)
		defer stderr.Close()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatalf("ops did not start:\n%s", p.logs.String())
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				// The first-run admin token: the default client sends it.
				if b, err := os.ReadFile(filepath.Join(dataDir, identity.AdminTokenFile)); err == nil {
					p.token = strings.TrimSpace(string(b))
					testutil.Authorize(p.url, p.token)
				}
				return p
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("ops not ready:\n%s", p.logs.String())
	return nil
}

func batchBody(ids []string) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"specversion":"1.0","id":%q,"source":"/crash","type":"crash.t%d","data":{"i":%d}}`, id, i%3, i)
	}
	sb.WriteByte(']')
	return sb.String()
}

func postBatch(ctx context.Context, url string, ids []string) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/api/v1/events", strings.NewReader(batchBody(ids)))
	req.Header.Set("Content-Type", event.BatchContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	var res api.PublishResult
	if err := json.Unmarshal(b, &res); err != nil || res.Count != len(ids) {
		return fmt.Errorf("bad 200 body: %s", b)
	}
	return nil
}

// readAllIDs counts how often each ev.crash event id is stored.
func readAllIDs(t *testing.T, url string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, e := range readEvents(t, url, "ev.crash.>") {
		counts[e.Event.ID]++
	}
	return counts
}

// TestCrashLosesNothingAcknowledged kills a real ops process with SIGKILL
// while clients publish, restarts it, and checks that every event whose
// request got a 200 is stored exactly once; then it re-sends the requests
// that never got an answer, as a client would, and checks nothing doubled.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process")
	}
	// With an fsync interval, kill -9 must lose nothing either: the store
	// writes before it acknowledges; only power loss can lose the unsynced tail.
	for _, mode := range []string{"always", "1s"} {
		t.Run("sync="+mode, func(t *testing.T) { crashRounds(t, mode) })
	}
}

func crashRounds(t *testing.T, syncMode string) {
	dir := t.TempDir()
	acked := map[string]bool{}
	var unanswered [][]string
	rounds := 4
	for round := 0; round < rounds; round++ {
		p := startOps(t, dir, "--bus-sync", syncMode)
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					ids := make([]string, 1+rand.IntN(40))
					for i := range ids {
						ids[i] = event.NewID()
					}
					err := postBatch(ctx, p.url, ids)
					mu.Lock()
					if err == nil {
						for _, id := range ids {
							acked[id] = true
						}
					} else {
						unanswered = append(unanswered, ids)
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
		cancel()
		wg.Wait()
		t.Logf("round %d: %d acked so far, %d unanswered requests", round, len(acked), len(unanswered))
	}
	p := startOps(t, dir, "--bus-sync", syncMode)
	counts := readAllIDs(t, p.url)
	for id := range acked {
		switch counts[id] {
		case 1:
		case 0:
			t.Fatalf("acknowledged event %s lost", id)
		default:
			t.Fatalf("acknowledged event %s stored %d times", id, counts[id])
		}
	}
	for id, n := range counts {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
	// Clients retry what never got an answer; each must end up stored once.
	for _, ids := range unanswered {
		if err := postBatch(context.Background(), p.url, ids); err != nil {
			t.Fatalf("retry: %v", err)
		}
	}
	counts = readAllIDs(t, p.url)
	for _, ids := range unanswered {
		for _, id := range ids {
			if counts[id] != 1 {
				t.Fatalf("retried event %s stored %d times", id, counts[id])
			}
		}
	}
	if len(acked) == 0 {
		t.Fatal("no publish was acknowledged; the test proved nothing")
	}
	t.Logf("%d acked events all present once; %d total stored", len(acked), len(counts))
}

// TestCLIAgainstServer drives the real binary's client commands.
func TestCLIAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	dataDir := t.TempDir()
	p := startOps(t, dataDir)
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), append([]string{"--server", p.url}, args...)...)
		// The CLI finds the first-run admin token in the data directory.
		cmd.Env = append(os.Environ(), "OPS_DATA_DIR="+dataDir, "OPS_TOKEN=")
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("", "publish", "--type", "cli.order", "--data", `{"total":3}`)
	// seq 1 is the first run's ev.auth.token_created.
	if err != nil || !strings.Contains(out, "ev.cli.order seq 2") {
		t.Fatalf("publish: %v %s", err, out)
	}
	var nd strings.Builder
	for i := 0; i < 250; i++ {
		fmt.Fprintf(&nd, `{"type":"cli.line","data":{"i":%d}}`+"\n", i)
	}
	out, err = run(nd.String(), "publish", "-f", "-", "--batch", "100")
	if err != nil || !strings.Contains(out, "published 250 events: 250 stored, 0 duplicates") {
		t.Fatalf("publish -f: %v %s", err, out)
	}
	out, err = run(`{"type":"cli.ok"}`+"\n"+`{"data":1}`+"\n", "publish", "-f", "-")
	if err == nil || !strings.Contains(out, "line 2") || !strings.Contains(out, "type") || !strings.Contains(out, "0 events published") {
		t.Fatalf("bad line should name line 2, the field and what was published: %v %s", err, out)
	}
	// A line that is not JSON at all, on standard input: what came before it
	// is published, and said so.
	out, err = run(`{"type":"cli.stdin"}`+"\n"+`not json`+"\n", "publish", "-f", "-")
	if err == nil || !strings.Contains(out, "line 2: not JSON") || !strings.Contains(out, "lines 1 to 1 were published (1 events") {
		t.Fatalf("stdin bad line: %v %s", err, out)
	}
	// A file is checked whole first: a bad line publishes nothing.
	bad := filepath.Join(t.TempDir(), "bad.ndjson")
	_ = os.WriteFile(bad, []byte(`{"type":"cli.file"}`+"\n"+`{"type":"cli.file"}`+"\n"+`{"type": oops}`+"\n"), 0o600)
	out, err = run("", "publish", "-f", bad)
	if err == nil || !strings.Contains(out, "line 3: not JSON") || !strings.Contains(out, "column") || !strings.Contains(out, "nothing was published") {
		t.Fatalf("bad file: %v %s", err, out)
	}
	if n := len(readEvents(t, p.url, "ev.cli.file")); n != 0 {
		t.Fatalf("%d events of a refused file stored", n)
	}
	out, err = run("", "tail", "--since", "1", "--count", "251", "-o", "json", "ev.cli.>")
	if err != nil {
		t.Fatalf("tail: %v %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 251 {
		t.Fatalf("tail printed %d lines", len(lines))
	}
	var last api.StoredEvent
	if err := json.Unmarshal([]byte(lines[250]), &last); err != nil || last.Subject != "ev.cli.line" || string(last.Event.Data) != `{"i":249}` {
		t.Fatalf("last tailed: %v %s", err, lines[250])
	}
	out, err = run("", "keys", "create", "--name", "cli test")
	if err != nil || !strings.HasPrefix(out, "wk_") {
		t.Fatalf("keys create: %v %s", err, out)
	}
	out, err = run("", "keys", "ls")
	if err != nil || !strings.Contains(out, "cli test") {
		t.Fatalf("keys ls: %v %s", err, out)
	}
	out, err = run("", "streams", "-o", "csv")
	if err != nil || !strings.Contains(out, "EVENTS,ev.>,") {
		t.Fatalf("streams: %v %s", err, out)
	}

	// Identity from the CLI: tokens, users, and what a role may do.
	as := func(token, stdin string, args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), append([]string{"--server", p.url}, args...)...)
		cmd.Env = append(os.Environ(), "OPS_DATA_DIR="+t.TempDir(), "OPS_TOKEN="+token)
		cmd.Stdin = strings.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	out, err = as("", "", "streams")
	if err == nil || !strings.Contains(out, "401") || !strings.Contains(out, "ops token create") {
		t.Fatalf("no token should be refused with a hint: %v %s", err, out)
	}
	out, err = run("", "token", "create", "--name", "ci", "--role", "viewer", "--expires", "1h")
	viewer := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if err != nil || !strings.HasPrefix(viewer, "ops_") || !strings.Contains(out, "only time the token is shown") {
		t.Fatalf("token create: %v %s", err, out)
	}
	if out, err = as(viewer, "", "streams"); err != nil {
		t.Fatalf("viewer token reads: %v %s", err, out)
	}
	out, err = as(viewer, "", "publish", "--type", "cli.denied")
	if err == nil || !strings.Contains(out, "403") || !strings.Contains(out, "events:write") {
		t.Fatalf("viewer publish should be forbidden: %v %s", err, out)
	}
	if out, err = run("s3cret-password\n", "user", "add", "erin", "--role", "editor", "--email", "erin@example.com"); err != nil {
		t.Fatalf("user add: %v %s", err, out)
	}
	out, err = run("", "user", "ls", "-o", "csv")
	if err != nil || !strings.Contains(out, "erin,erin@example.com,editor,,api") {
		t.Fatalf("user ls: %v %s", err, out)
	}
	out, err = run("", "token", "ls", "-o", "csv")
	if err != nil || !strings.Contains(out, ",ci,viewer,") || strings.Contains(out, viewer[len(viewer)-20:]) {
		t.Fatalf("token ls: %v %s", err, out)
	}
	id := strings.Split(viewer, "_")[1]
	if out, err = run("", "token", "rm", id); err != nil {
		t.Fatalf("token rm: %v %s", err, out)
	}
	if out, err = as(viewer, "", "streams"); err == nil || !strings.Contains(out, "401") {
		t.Fatalf("revoked token still works: %v %s", err, out)
	}
	if out, err = run("", "policy", "set", "user", "erin", "--for", "10m", "--reason", "cli test"); err != nil {
		t.Fatalf("policy set: %v %s", err, out)
	}
	out, err = run("", "policy", "ls", "-o", "csv")
	if err != nil || !strings.Contains(out, "user,erin,lock,true,") {
		t.Fatalf("policy ls: %v %s", err, out)
	}
	out, err = run("x\n", "user", "hash")
	if err == nil || !strings.Contains(out, "at least 8") {
		t.Fatalf("short password should be refused: %v %s", err, out)
	}
	out, err = run("long enough\n", "user", "hash")
	if err != nil || !strings.HasPrefix(out, "$2a$") {
		t.Fatalf("user hash: %v %s", err, out)
	}
}

// TestSIGTERMDrains: a graceful stop under load and with a live tail open
// exits 0, closes the tail, and keeps every acknowledged event.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	dir := t.TempDir()
	p := startOps(t, dir)
	tail, err := http.Get(p.url + "/api/v1/events/stream?subject=ev.crash.>")
	if err != nil {
		t.Fatal(err)
	}
	tailDone := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, tail.Body); close(tailDone) }()

	var mu sync.Mutex
	acked := map[string]bool{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				ids := []string{event.NewID(), event.NewID(), event.NewID()}
				if postBatch(ctx, p.url, ids) == nil {
					mu.Lock()
					for _, id := range ids {
						acked[id] = true
					}
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = p.cmd.Wait()
	cancel()
	wg.Wait()
	if err != nil {
		p.mu.Lock()
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.String())
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("drain took %v", d)
	}
	select {
	case <-tailDone:
	case <-time.After(5 * time.Second):
		t.Fatal("SSE tail still open after shutdown")
	}
	<-p.eof
	p.mu.Lock()
	logs := p.logs.String()
	p.mu.Unlock()
	if !strings.Contains(logs, "msg=stopped") {
		t.Fatalf("no clean stop in logs:\n%s", logs)
	}
	p2 := startOps(t, dir)
	counts := readAllIDs(t, p2.url)
	for id := range acked {
		if counts[id] != 1 {
			t.Fatalf("acked %s stored %d times", id, counts[id])
		}
	}
	if len(acked) == 0 {
		t.Fatal("nothing acknowledged")
	}
}
