// Command upstream is the origin behind every proxy in bench/proxy.sh: it
// answers from memory, so the figures measure the proxies, not the origin.
//
//	go run ./bench/proxy/upstream -addr 127.0.0.1:18000
//
// GET /      a fixed 1 KiB text/plain body
// GET /html  a 10 KiB text/html page with a </head>, for injection benchmarks
package main

import (
	"bytes"
	"flag"
	"log"
	"net/http"
	"strconv"
	"time"
)

var addr = flag.String("addr", "127.0.0.1:18000", "listen address")

func main() {
	flag.Parse()
	text := bytes.Repeat([]byte("0123456789abcdef"), 1024/16)
	text[len(text)-1] = '\n'
	page := htmlPage(10 << 10)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", body("text/plain; charset=utf-8", text))
	mux.HandleFunc("GET /html", body("text/html; charset=utf-8", page))
	// The same 1 KiB, cacheable for a minute: what a cache serves from itself.
	cached := body("text/plain; charset=utf-8", text)
	mux.HandleFunc("GET /cached", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Cache-Control"] = []string{"public, max-age=60"}
		cached(w, r)
	})
	srv := &http.Server{
		Addr:              *addr,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute, // proxies keep pooled connections open between runs
	}
	log.Fatal(srv.ListenAndServe())
}

// body serves b with a fixed Content-Length, so no proxy has to chunk.
func body(ctype string, b []byte) http.HandlerFunc {
	n := strconv.Itoa(len(b))
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{ctype}
		h["Content-Length"] = []string{n}
		_, _ = w.Write(b)
	}
}

// htmlPage is an HTML document of exactly size bytes.
func htmlPage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>bench</title></head>\n<body>\n")
	const tail = "</body></html>\n"
	line := "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.</p>\n"
	for b.Len()+len(line)+len(tail) <= size {
		b.WriteString(line)
	}
	b.WriteString("<!--")
	for b.Len()+len("-->\n")+len(tail) < size {
		b.WriteByte('x')
	}
	b.WriteString("-->\n")
	b.WriteString(tail)
	return b.Bytes()
}
