// Package listfetch gets the lists Ops reads from URLs (the resolver's
// block lists, the content filter's category lists, phishing feeds):
// a conditional GET with the last ETag, a size bound, and nothing
// replaced unless a whole, non-empty list arrived, so a failed or empty
// fetch keeps the last good copy.
package listfetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Source is one list: its URL, and the last copy fetched with its ETag.
type Source struct {
	URL  string
	ETag string
	Body []byte
}

// Get fetches s.URL, sending If-None-Match when a copy is held. changed
// is true when a new copy replaced s.Body (and s.ETag); a 304 keeps the
// copy. A body over max bytes, an empty one, or any other status is an
// error and changes nothing.
func Get(ctx context.Context, hc *http.Client, s *Source, max int64) (changed bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return false, err
	}
	if s.ETag != "" && s.Body != nil {
		req.Header.Set("If-None-Match", s.ETag)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		if s.Body == nil {
			return false, errors.New("304 Not Modified, but no copy is held")
		}
		return false, nil
	case http.StatusOK:
	default:
		return false, fmt.Errorf("HTTP %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return false, err
	}
	if int64(len(b)) > max {
		return false, fmt.Errorf("larger than %d MiB", max>>20)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return false, errors.New("empty")
	}
	s.Body, s.ETag = b, resp.Header.Get("ETag")
	return true, nil
}
