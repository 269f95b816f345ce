package reply

import (
	"fmt"
	"html"
	"io"
	"net/http"
)

// Page writes a small HTML page for browsers: the proxies' error and
// block pages.
func Page(w http.ResponseWriter, code int, title, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, PageBody(code, title, msg))
}

// PageBody is the HTML of Page.
func PageBody(code int, title, msg string) string {
	return fmt.Sprintf("<!doctype html><title>%d %s</title><h1>%d %s</h1><p>%s</p>\n", code, html.EscapeString(title), code, html.EscapeString(title), html.EscapeString(msg))
}

// Recorder counts the status and bytes of a response, for a proxy's logs
// and events.
type Recorder struct {
	http.ResponseWriter
	Code int
	N    int64
}

func (r *Recorder) WriteHeader(c int) {
	if r.Code == 0 {
		r.Code = c
	}
	r.ResponseWriter.WriteHeader(c)
}

func (r *Recorder) Write(b []byte) (int, error) {
	if r.Code == 0 {
		r.Code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.N += int64(n)
	return n, err
}

func (r *Recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
