package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/andybalholm/brotli"
)

// TestDistFresh: every source has both compressed forms and they decode to
// the source as it is now (run `go generate ./web` after editing src/).
func TestDistFresh(t *testing.T) {
	if len(Names()) == 0 {
		t.Fatal("no assets embedded")
	}
	for _, n := range Names() {
		a := Get(n)
		if len(a.Br) == 0 || len(a.Gz) == 0 {
			t.Fatalf("%s: dist/%s.br or .gz missing: run go generate ./web", n, n)
		}
		br, err := io.ReadAll(brotli.NewReader(bytes.NewReader(a.Br)))
		if err != nil || !bytes.Equal(br, a.Raw) {
			t.Errorf("%s: dist/%s.br is stale (%v): run go generate ./web", n, n, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(a.Gz))
		if err != nil {
			t.Fatal(err)
		}
		gz, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(gz, a.Raw) {
			t.Errorf("%s: dist/%s.gz is stale (%v): run go generate ./web", n, n, err)
		}
		if len(a.Br) >= len(a.Raw) && len(a.Raw) > 1024 {
			t.Errorf("%s: brotli %d bytes is not smaller than %d", n, len(a.Br), len(a.Raw))
		}
	}
}
