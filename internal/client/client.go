// Package client is the HTTP client the CLI uses to talk to a running Ops
// server's API. It speaks only the public API, as any other client would.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/event"
)

// Client talks to one server.
type Client struct {
	Base  string
	Token string // sent as Authorization: Bearer when set
	HTTP  *http.Client
}

// New returns a client for base (http://127.0.0.1:7070).
func New(base string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// APIError is an error answer from the server.
type APIError struct {
	Status int
	Body   api.ErrorBody
}

func (e *APIError) Error() string {
	if e.Body.Field != "" {
		return fmt.Sprintf("%d %s: %s (field %s)", e.Status, http.StatusText(e.Status), e.Body.Error, e.Body.Field)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Body.Error)
}

// Retryable reports whether a request may succeed if sent again.
func Retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusTooManyRequests || ae.Status >= 502
	}
	return err != nil // network errors
}

func (c *Client) do(ctx context.Context, method, path, ct string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	c.authorize(req)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, c.Base+path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &ae.Body) != nil || ae.Body.Error == "" {
			ae.Body.Error = strings.TrimSpace(string(b))
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Publish sends events as one batch.
func (c *Client) Publish(ctx context.Context, events []json.RawMessage) (*api.PublishResult, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteByte(']')
	var res api.PublishResult
	if err := c.do(ctx, "POST", "/api/v1/events", event.BatchContentType, &b, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Post sends an empty POST and decodes the JSON answer into out.
func (c *Client) Post(ctx context.Context, path string, out any) error {
	return c.do(ctx, "POST", path, "application/json", nil, out)
}

// Get decodes a JSON GET into out, or copies it when out is an io.Writer.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, "GET", path, "", nil, out)
}

// Tail streams events matching subject from the SSE endpoint, calling fn with
// each. since may be empty (new events only), a position or an RFC 3339 time.
// It reconnects after errors, resuming after the last event seen.
func (c *Client) Tail(ctx context.Context, subject, since string, fn func(api.StoredEvent) error) error {
	last := ""
	for {
		err := c.tailOnce(ctx, subject, since, &last, fn)
		if ctx.Err() != nil {
			return nil
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status < 500 {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (c *Client) tailOnce(ctx context.Context, subject, since string, last *string, fn func(api.StoredEvent) error) error {
	q := url.Values{"subject": {subject}}
	if since != "" {
		q.Set("since", since)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", c.Base+"/api/v1/events/stream?"+q.Encode(), nil)
	if err == nil {
		c.authorize(req)
	}
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	hc := &http.Client{Transport: c.HTTP.Transport} // no overall timeout on a stream
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		ae := &APIError{Status: resp.StatusCode}
		_ = json.NewDecoder(resp.Body).Decode(&ae.Body)
		return ae
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var id, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && data != "":
			var s api.StoredEvent
			if err := json.Unmarshal([]byte(data), &s); err == nil && s.Seq > 0 {
				if err := fn(s); err != nil {
					return err
				}
				*last = id
			}
			id, data = "", ""
		}
	}
	return sc.Err()
}

func (c *Client) authorize(req *http.Request) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
}

// SendRaw sends body as is, of content type ct, and decodes the answer
// into out.
func (c *Client) SendRaw(ctx context.Context, method, path, ct string, body []byte, out any) error {
	return c.do(ctx, method, path, ct, bytes.NewReader(body), out)
}

// Send makes a JSON request (body may be nil) and decodes the answer into out.
func (c *Client) Send(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	return c.do(ctx, method, path, "application/json", r, out)
}
