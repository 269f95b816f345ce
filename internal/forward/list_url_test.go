package forward

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
)

// TestCategoryListURL: a category's list_url is fetched at load and on
// each reload with If-None-Match; a 304 keeps the list, a new list
// replaces it, and a failing URL keeps the last copy.
func TestCategoryListURL(t *testing.T) {
	var mu sync.Mutex
	body, etag, fail := "listed.test\n", `"v1"`, false
	var conditional int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			http.Error(w, "down", 500)
			return
		}
		if r.Header.Get("If-None-Match") == etag {
			conditional++
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "remote"), 0o755)
	os.WriteFile(filepath.Join(dir, "remote", "category.conf"), []byte("action = block\nlist_url = "+srv.URL+"/list.txt\n"), 0o644)
	f, err := newFilter(config.ForwardFilter{Enabled: true, Categories: dir, Threshold: 100, ScanBytes: 1 << 16, Reload: config.Duration(time.Second), WarnFor: config.Duration(time.Hour)},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	classified := func(host string) string {
		sc := f.set.Load().NewScores()
		sc.URL(&url.URL{Scheme: "http", Host: host})
		c, _ := f.categoryOf(sc)
		return c
	}
	if c := classified("www.listed.test"); c != "remote" {
		t.Fatalf("after the first load: %q", c)
	}
	if err := f.reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if conditional != 1 {
		t.Fatalf("the reload asked %d times with If-None-Match, want 1", conditional)
	}
	body, etag = "other.test\n", `"v2"`
	mu.Unlock()
	if err := f.reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if classified("listed.test") != "" || classified("other.test") != "remote" {
		t.Fatalf("after the list changed: listed %q, other %q", classified("listed.test"), classified("other.test"))
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	if err := f.reload(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if classified("other.test") != "remote" {
		t.Fatal("a failing list_url dropped the list")
	}
}
