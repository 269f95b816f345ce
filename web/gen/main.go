// Command gen compresses every file of web/src into web/dist as .br
// (brotli, best) and .gz (gzip, best): `go generate ./web`.
package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/andybalholm/brotli"
)

func main() {
	if err := run("src", "dist"); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(src, dist string) error {
	old, _ := filepath.Glob(filepath.Join(dist, "*"))
	for _, f := range old {
		if strings.HasSuffix(f, ".br") || strings.HasSuffix(f, ".gz") {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		var br, gz bytes.Buffer
		bw := brotli.NewWriterLevel(&br, brotli.BestCompression)
		if _, err := bw.Write(raw); err != nil {
			return err
		}
		if err := bw.Close(); err != nil {
			return err
		}
		gw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		if _, err := gw.Write(raw); err != nil {
			return err
		}
		if err := gw.Close(); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dist, e.Name()+".br"), br.Bytes(), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dist, e.Name()+".gz"), gz.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Printf("%-16s %7d raw %7d gzip %7d brotli\n", e.Name(), len(raw), gz.Len(), br.Len())
	}
	return nil
}
