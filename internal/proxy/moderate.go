package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/moderate"
)

// Moderator checks posts (the moderation module).
type Moderator interface {
	Check(p moderate.Post) moderate.Decision
}

// moderationHeader tells the upstream a post waits for review
// (action hold_header). Clients may not send it: it is removed from
// every request on a moderated route before anything else.
const moderationHeader = "X-Ops-Moderation"

// moderatePost reads a POST, PUT or PATCH body on a route with moderate
// set (up to its max_body), checks the configured fields and applies the
// route's action. It reports whether the request goes on to the
// upstream (its body then is what was read, or masked).
func (m *Module) moderatePost(w http.ResponseWriter, r *http.Request, rt *route, p *pass, in *countReader) bool {
	md := rt.cfg.Moderate
	r.Header.Del(moderationHeader)
	if len(md.Fields) == 0 || (r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodPatch) {
		return true
	}
	if m.deps.Moderator == nil {
		// moderate was added by a reload to an Ops that started without
		// moderation: refuse rather than let posts through unread.
		page(w, http.StatusServiceUnavailable, "Unavailable", "moderation is configured on this route but not running: restart Ops to start it")
		return false
	}
	max := int64(md.MaxBody)
	if r.ContentLength > max {
		page(w, http.StatusRequestEntityTooLarge, "Too large", fmt.Sprintf("body: a post on this route is read for moderation, up to %d bytes", max))
		return false
	}
	body, err := io.ReadAll(io.LimitReader(in.rc, max+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			page(w, http.StatusRequestEntityTooLarge, "Too large", "The request body is too large.")
		} else {
			page(w, http.StatusBadRequest, "Bad request", "body: "+err.Error())
		}
		return false
	}
	if int64(len(body)) > max {
		page(w, http.StatusRequestEntityTooLarge, "Too large", fmt.Sprintf("body: a post on this route is read for moderation, up to %d bytes", max))
		return false
	}
	restore := func(b []byte) {
		in.rc = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		r.Header.Del("Transfer-Encoding")
		r.TransferEncoding = nil
	}
	restore(body)
	ct := r.Header.Get("Content-Type")
	names := append([]string{}, md.Fields...)
	for _, n := range []string{md.Thread, md.Author} {
		if n != "" {
			names = append(names, n)
		}
	}
	vals, err := moderate.Fields(ct, body, names)
	if errors.Is(err, moderate.ErrNotText) {
		if len(body) == 0 {
			return true
		}
		page(w, http.StatusUnsupportedMediaType, "Unsupported", err.Error())
		return false
	}
	if err != nil {
		page(w, http.StatusBadRequest, "Bad request", err.Error())
		return false
	}
	post := moderate.Post{Route: rt.cfg.Name, Thread: vals[md.Thread], Author: vals[md.Author], Fields: map[string]string{}, Action: md.Action}
	if md.Thread == "" {
		post.Thread = r.URL.Path
	}
	if md.Author == "" && p.id != nil {
		post.Author = p.id.User
	}
	if p.ip.IsValid() {
		post.Client = clientip.Anonymize(p.ip).String()
	}
	for _, f := range md.Fields {
		if v, ok := vals[f]; ok {
			post.Fields[f] = v
		}
	}
	if len(post.Fields) == 0 {
		return true // none of the fields: not a post this route moderates
	}
	d := m.deps.Moderator.Check(post)
	switch d.Action {
	case "hold":
		page(w, http.StatusForbidden, "Held for review", "Your post was held for a moderator to review before it appears.")
		return false
	case "reject":
		msg := "Your post was not accepted: it reads as abusive."
		if len(d.Result.Words) > 0 {
			msg = "Your post was not accepted: it uses words this forum does not allow (" + strings.Join(d.Result.Words, ", ") + ")."
		}
		page(w, http.StatusUnprocessableEntity, "Not accepted", msg)
		return false
	case "hold_header":
		r.Header.Set(moderationHeader, "hold")
	case "mask":
		if len(d.Masked) > 0 {
			b, err := moderate.SetFields(ct, body, d.Masked)
			if err != nil {
				// A multipart post cannot be rewritten: hold it rather
				// than let the words through.
				page(w, http.StatusForbidden, "Held for review", "Your post was held for a moderator to review before it appears.")
				return false
			}
			restore(b)
		}
	}
	return true
}
