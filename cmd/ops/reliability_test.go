package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/testutil"
)

// rawPost sends a POST of body to /api/v1/events on its own connection.
// With hangUp it closes the connection as soon as the body is written,
// before any answer, as a client that gives up does.
func rawPost(t *testing.T, base, token, body string, hangUp bool) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
		token, event.BatchContentType, len(body), body)
	if hangUp {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHangUpThenRebatchedRetryStoredOnce: a client that hangs up after
// sending a batch, then sends the same events again in another batch
// (another order, one more event), gets each stored once, in every
// trial: the first publish completes and records its ids whatever the
// client did.
func TestHangUpThenRebatchedRetryStoredOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	p := startOps(t, t.TempDir())
	const trials = 10
	for trial := 0; trial < trials; trial++ {
		ids := make([]string, 50)
		for i := range ids {
			ids[i] = fmt.Sprintf("hang-%d-%d", trial, i)
		}
		rawPost(t, p.url, p.token, batchBody(ids), true)
		again := make([]string, 0, len(ids)+1)
		for i := len(ids) - 1; i >= 0; i-- {
			again = append(again, ids[i])
		}
		again = append(again, fmt.Sprintf("hang-%d-new", trial))
		// The retry may meet the first publish still in flight: it waits
		// for it, or is told to come back (503), as a client would retry.
		var code int
		for try := 0; try < 50; try++ {
			if code = rawPost(t, p.url, p.token, batchBody(again), false); code != 503 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code != 200 {
			t.Fatalf("trial %d: retry answered %d", trial, code)
		}
	}
	counts := readAllIDs(t, p.url)
	if len(counts) != trials*51 {
		t.Fatalf("%d distinct events stored, want %d", len(counts), trials*51)
	}
	for id, n := range counts {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
}

// rss is a process's resident set size in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestStalledTailReaders: readers of the event stream that never read
// (small receive buffers, nothing read) while events pour in cost the
// server a bounded amount of memory and never break publishing.
func TestStalledTailReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	p := startOps(t, t.TempDir())
	pid := p.cmd.Process.Pid
	base := rss(t, pid)
	// Five readers from the first event on, with 4 KiB receive buffers,
	// that read nothing.
	var readers []net.Conn
	for i := 0; i < 5; i++ {
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		c, err := d.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /api/v1/events/stream?since=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", p.token)
		readers = append(readers, c)
	}
	// 40,000 events of 1 KB (about 40 MB) from 4 publishers, paced: a
	// count, not a time, so a busy machine does not make the load smaller.
	payload := strings.Repeat("x", 900)
	var failed atomic.Int64
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for n := 0; n < 100; n++ {
				var sb strings.Builder
				sb.WriteByte('[')
				for i := 0; i < 100; i++ {
					if i > 0 {
						sb.WriteByte(',')
					}
					fmt.Fprintf(&sb, `{"specversion":"1.0","id":"%d-%d-%d","source":"/t","type":"load.x","data":{"p":%q}}`, w, n, i, payload)
				}
				sb.WriteByte(']')
				req, _ := http.NewRequest("POST", p.url+"/api/v1/events", strings.NewReader(sb.String()))
				req.Header.Set("Content-Type", event.BatchContentType)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					if resp != nil {
						b, _ := io.ReadAll(resp.Body)
						t.Logf("publish: %d %s", resp.StatusCode, b)
					}
				} else {
					sent.Add(100)
				}
				if resp != nil {
					resp.Body.Close()
				}
				time.Sleep(40 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	grown := rss(t, pid) - base
	t.Logf("%d events published (%d MB), RSS grew by %d MiB with %d stalled readers", sent.Load(), sent.Load()*1000>>20, grown>>20, len(readers))
	if failed.Load() > 0 {
		t.Fatalf("%d publishes failed while readers stalled", failed.Load())
	}
	if sent.Load() < 40000 {
		t.Fatalf("only %d events published: the load proved little", sent.Load())
	}
	if grown > 120<<20 {
		t.Fatalf("RSS grew by %d MiB with stalled readers; a tail must buffer a bounded amount", grown>>20)
	}
	// The server still serves a reader that does read, from the start.
	req, _ := http.NewRequest("GET", p.url+"/api/v1/events/stream?since=1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			return
		}
	}
	t.Fatalf("a reading tail got no event: %v", sc.Err())
}

// TestSecondServerOnDataDir: a second ops serve on a data directory in use
// exits at once, naming the process that holds it, and the first keeps
// serving.
func TestSecondServerOnDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	dir := t.TempDir()
	p := startOps(t, dir)
	cmd := exec.Command(opsBinary(t), "serve", "--data-dir", dir, "--http-listen", "127.0.0.1:0")
	done := make(chan error, 1)
	var out []byte
	go func() {
		var err error
		out, err = cmd.CombinedOutput()
		done <- err
	}()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("second server: %v\n%s", err, out)
		}
		if want := "pid " + strconv.Itoa(p.cmd.Process.Pid); !strings.Contains(string(out), want) || !strings.Contains(string(out), dir) {
			t.Fatalf("second server's message does not name %q and the directory:\n%s", want, out)
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("a second server on the same data directory kept running")
	}
	if code := postBatchCode(t, p.url, []string{"after-second"}); code != 200 {
		t.Fatalf("first server after the second tried: %d", code)
	}
}

func postBatchCode(t *testing.T, url string, ids []string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/api/v1/events", strings.NewReader(batchBody(ids)))
	req.Header.Set("Content-Type", event.BatchContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDiskFull fills a small tmpfs under a real ops: new events are
// refused with 507 naming the disk, /readyz says it takes no writes, and
// when space is freed everything works again without a restart; nothing
// acknowledged is lost.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs and builds a real process")
	}
	testutil.Require(t, os.Geteuid() == 0, "root (to mount a 24 MiB tmpfs)", "run the suite as root, as make test in CI does")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", dir).CombinedOutput(); err != nil {
		testutil.Require(t, false, "mount -t tmpfs ("+strings.TrimSpace(string(out))+")", "run the suite as root on a machine that allows mounts")
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	// Ballast: space that something other than Ops holds, freed later.
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 6<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startOps(t, dir)
	acked := map[string]bool{}
	publish := func(n int) int {
		ids := make([]string, 20)
		for i := range ids {
			ids[i] = fmt.Sprintf("full-%d-%d", n, i)
		}
		var sb strings.Builder
		sb.WriteByte('[')
		for i, id := range ids {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"specversion":"1.0","id":%q,"source":"/t","type":"crash.full","data":{"p":%q}}`, id, strings.Repeat("y", 2000))
		}
		sb.WriteByte(']')
		req, _ := http.NewRequest("POST", p.url+"/api/v1/events", strings.NewReader(sb.String()))
		req.Header.Set("Content-Type", event.BatchContentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			for _, id := range ids {
				acked[id] = true
			}
		} else if resp.StatusCode == 507 && (!strings.Contains(string(body), dir) || !strings.Contains(string(body), "free")) {
			t.Fatalf("507 does not name the disk and its free space: %s", body)
		}
		return resp.StatusCode
	}
	n, code := 0, 200
	for ; n < 2000 && code == 200; n++ {
		code = publish(n)
	}
	if code != 507 {
		t.Fatalf("after %d requests: %d, want 507 once the disk is nearly full", n, code)
	}
	t.Logf("507 after %d requests (%d events acknowledged)", n, len(acked))
	ready := func() (int, string) {
		resp, err := http.Get(p.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if c, b := ready(); c != 503 || !strings.Contains(b, "not ready for writes") {
		t.Fatalf("/readyz while full: %d %s", c, b)
	}
	// Something else takes the rest of the disk: even JetStream's own
	// writes fail now (a token is a KV write), and the answer says why.
	junk := filepath.Join(dir, "junk")
	f, err := os.Create(junk)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{64 << 10, 4 << 10, 1} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				break
			}
		}
	}
	f.Close()
	// A write or a few may still land in pages the store's files hold;
	// soon one needs a new page and the store finds the disk full.
	var code507 int
	var body string
	for i := 0; i < 200 && code507 != 507; i++ {
		req, _ := http.NewRequest("POST", p.url+"/api/v1/tokens", strings.NewReader(fmt.Sprintf(`{"name":"while-full-%d","role":"viewer"}`, i)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code507, body = resp.StatusCode, string(b)
		if code507 != 201 && code507 != 507 {
			t.Fatalf("token while the disk is full: %d %s", code507, b)
		}
	}
	if code507 != 507 || !strings.Contains(body, "disk full") {
		t.Fatalf("tokens while the disk is full: %d %s", code507, body)
	}
	// Space comes back (the junk and the ballast go): writes resume by
	// themselves.
	for _, f := range []string{junk, ballast} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	var got int
	t.Cleanup(func() {
		if t.Failed() {
			p.mu.Lock()
			t.Logf("ops log:\n%s", p.logs.String())
			p.mu.Unlock()
		}
	})
	testutil.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		if got = postBatchCode(t, p.url, []string{fmt.Sprintf("after-%d", time.Now().UnixNano())}); got != 200 {
			return fmt.Errorf("publish after space was freed: %d", got)
		}
		if c, b := ready(); c != 200 {
			return fmt.Errorf("/readyz after space was freed: %d %s", c, b)
		}
		return nil
	})
	req, _ := http.NewRequest("POST", p.url+"/api/v1/tokens", strings.NewReader(`{"name":"after-full","role":"viewer"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("token after space was freed: %v %v", err, resp)
	}
	resp.Body.Close()
	// Nothing acknowledged was lost, here and after a restart.
	check := func(url string) {
		stored := map[string]int{}
		for _, e := range readEvents(t, url, "ev.crash.full") {
			stored[e.Event.ID]++
		}
		for id := range acked {
			if stored[id] != 1 {
				t.Fatalf("acknowledged event %s stored %d times", id, stored[id])
			}
		}
	}
	check(p.url)
	// The store had hit the full disk (the token's write) and was
	// restarted, not left refusing writes until a restart of Ops.
	p.mu.Lock()
	restarted := strings.Contains(p.logs.String(), "JetStream restarted")
	p.mu.Unlock()
	if !restarted {
		t.Fatal("the bus store was not restarted after the disk filled")
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
	check(startOps(t, dir).url)
}
