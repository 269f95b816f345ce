// Package web holds the web UI's static assets: the sources under src/ and,
// under dist/, the same files compressed with brotli and gzip at build time
// (`go generate ./web`), so the server sends stored bytes and compresses
// nothing per request.
package web

//go:generate go run ./gen

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"path"
	"sort"
)

//go:embed src dist
var files embed.FS

// Asset is one file in its three encodings.
type Asset struct {
	Name        string
	ContentType string
	Hash        string // hex of the SHA-256 of Raw, first 16 digits: the version in URLs and ETags
	Raw         []byte
	Br          []byte
	Gz          []byte
}

var assets = load()

func load() map[string]*Asset {
	out := map[string]*Asset{}
	ents, err := fs.ReadDir(files, "src")
	if err != nil {
		panic(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		n := e.Name()
		a := &Asset{Name: n, ContentType: contentType(n)}
		a.Raw, _ = files.ReadFile("src/" + n)
		a.Br, _ = files.ReadFile("dist/" + n + ".br")
		a.Gz, _ = files.ReadFile("dist/" + n + ".gz")
		sum := sha256.Sum256(a.Raw)
		a.Hash = hex.EncodeToString(sum[:8])
		out[n] = a
	}
	return out
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// Get returns the asset called name, or nil.
func Get(name string) *Asset { return assets[name] }

// Names lists the assets.
func Names() []string {
	out := make([]string, 0, len(assets))
	for n := range assets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
