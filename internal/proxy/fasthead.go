package proxy

import (
	"bufio"
	"bytes"
	"errors"

	"golang.org/x/net/http/httpguts"
)

// The fast path's parsers. They accept a strict subset of HTTP/1.1: what
// they do not understand they refuse, and the connection goes to the
// standard server, which answers exactly as it would have without the
// fast path (FuzzFastHead holds them to that).

var (
	errHeadTooBig = errors.New("head does not fit the buffer")
	errBareLF     = errors.New("line ends in a bare LF")
)

// peekHead waits until br holds a whole head (up to and including the
// blank line) and returns its length; the bytes stay in br. A head that
// does not fit br's buffer, or uses bare LF line ends, is refused with an
// error so that the standard server decides. started is called once
// when the first bytes are there and the head is not yet whole.
func peekHead(br *bufio.Reader, started func()) (int, error) {
	calledStart := false
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf, []byte("\n\r\n")); i >= 0 {
			if j := bytes.Index(buf[:i+1], []byte("\n\n")); j >= 0 {
				return 0, errBareLF
			}
			return i + 3, nil
		}
		if bytes.Contains(buf, []byte("\n\n")) {
			return 0, errBareLF
		}
		if len(buf) >= br.Size() {
			return 0, errHeadTooBig
		}
		if len(buf) > 0 && !calledStart && started != nil {
			calledStart = true
			started()
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return 0, err
		}
	}
}

// Header kinds the fast path acts on.
const (
	hOther   uint8 = iota
	hSkip          // not passed on: hop-by-hop, or set by the proxy
	hHandoff       // the standard server must handle the request
)

// field is a header line of a parsed head.
type field struct {
	name, value []byte
	kind        uint8
}

// reqHead is a parsed request head; its slices point into the bytes it
// was parsed from.
type reqHead struct {
	method, target, path, query []byte
	host                        []byte
	contentLength               int64 // -1: none
	close                       bool
	idemKey                     bool // Idempotency-Key or X-Idempotency-Key is set
	ua, referrer, acceptEnc     []byte
	xff                         [][]byte
	forwarded                   []byte // the first Forwarded value
	fields                      []field
}

// maxFastFields bounds the header lines a fast request may have.
const maxFastFields = 100

// fastMethods are the methods the fast path forwards.
var fastMethods = [][]byte{[]byte("GET"), []byte("HEAD"), []byte("POST"), []byte("PUT"), []byte("DELETE"), []byte("PATCH"), []byte("OPTIONS")}

// parseRequestHead parses head (ending in the blank line) into h, reusing
// h's slices. It returns false for anything the fast path leaves to the
// standard server: other protocols than HTTP/1.1, targets that are not
// plain origin-form paths (percent-encoding included, so the path the
// proxy routes on is the one net/http would decode), framing it does not
// do (Transfer-Encoding, Expect, Upgrade), malformed or duplicate fields.
// Headers only the proxy sets (spoof: identity, forwarding, X-Real-IP,
// also spelt with '_') are dropped; requests carrying Ops's session
// cookies or an Authorization that may hold an Ops token go to the
// standard path, which removes those (request.go).
func parseRequestHead(head []byte, h *reqHead, spoof []string) bool {
	fields := h.fields[:0]
	xff := h.xff[:0]
	*h = reqHead{contentLength: -1}
	line, rest, ok := cutLine(head)
	if !ok {
		return false
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return false
	}
	h.method = line[:sp1]
	known := false
	for _, m := range fastMethods {
		if bytes.Equal(h.method, m) {
			known = true
			break
		}
	}
	if !known {
		return false
	}
	line = line[sp1+1:]
	sp2 := bytes.IndexByte(line, ' ')
	if sp2 <= 0 || string(line[sp2+1:]) != "HTTP/1.1" {
		return false
	}
	h.target = line[:sp2]
	if h.target[0] != '/' {
		return false
	}
	for _, c := range h.target {
		if c <= ' ' || c >= 0x7f || c == '%' || c == '#' {
			return false
		}
	}
	h.path, h.query = h.target, nil
	if i := bytes.IndexByte(h.target, '?'); i >= 0 {
		h.path, h.query = h.target[:i], h.target[i+1:]
	}
	hostSeen := false
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			break
		}
		if len(fields) == maxFastFields {
			return false
		}
		name, value, ok := splitField(line)
		if !ok {
			return false
		}
		kind := hOther
		switch {
		case eqFold(name, "host"):
			if hostSeen || !httpguts.ValidHostHeader(string(value)) {
				return false
			}
			hostSeen = true
			h.host = value
			kind = hSkip
		case eqFold(name, "content-length"):
			if h.contentLength >= 0 {
				return false
			}
			n, ok := parseDecimal(value)
			if !ok {
				return false
			}
			h.contentLength = n
			kind = hSkip
		case eqFold(name, "connection"):
			if !eachToken(value, func(tok []byte) bool {
				switch {
				case eqFold(tok, "close"):
					h.close = true
				case eqFold(tok, "keep-alive"):
				default:
					return false // names more hop-by-hop fields, or asks to upgrade
				}
				return true
			}) {
				return false
			}
			kind = hSkip
		case eqFold(name, "transfer-encoding"), eqFold(name, "expect"), eqFold(name, "upgrade"),
			eqFold(name, "te"), eqFold(name, "http2-settings"):
			kind = hHandoff
		case eqFold(name, "keep-alive"), eqFold(name, "proxy-connection"), eqFold(name, "proxy-authorization"),
			eqFold(name, "proxy-authenticate"), eqFold(name, "trailer"),
			eqFold(name, "x-forwarded-host"), eqFold(name, "x-forwarded-proto"):
			kind = hSkip
		case eqFold(name, "x-forwarded-for"):
			xff = append(xff, value)
			kind = hSkip
		case eqFold(name, "forwarded"):
			if h.forwarded == nil {
				h.forwarded = value
			}
			kind = hSkip
		case eqFold(name, "user-agent"):
			if h.ua == nil {
				h.ua = value
			}
		case eqFold(name, "referer"):
			if h.referrer == nil {
				h.referrer = value
			}
		case eqFold(name, "accept-encoding"):
			if h.acceptEnc != nil {
				return false // several: leave the negotiation to the standard path
			}
			h.acceptEnc = value
		case eqFold(name, "x-real-ip"):
			kind = hSkip
		case eqFold(name, "idempotency-key"), eqFold(name, "x-idempotency-key"):
			h.idemKey = true
		case eqFold(name, "cookie"):
			if hasOpsCookie(value) {
				return false
			}
		case eqFold(name, "authorization"):
			if hasOpsCookie(value) || len(value) >= 6 && eqFold(value[:6], "basic ") {
				return false
			}
		}
		if kind == hHandoff {
			return false
		}
		if kind == hOther && isSpoofable(name, spoof) {
			kind = hSkip
		}
		fields = append(fields, field{name: name, value: value, kind: kind})
	}
	if len(rest) != 0 || !hostSeen {
		return false
	}
	h.fields, h.xff = fields, xff
	return true
}

// isSpoofable reports whether name is, read as CGI reads it (case folded,
// '_' as '-'), one of the names only the proxy sets; without allocating.
func isSpoofable(name []byte, spoof []string) bool {
	for _, s := range spoof {
		if len(s) != len(name) {
			continue
		}
		same := true
		for i := 0; i < len(name) && same; i++ {
			c := name[i]
			switch {
			case c == '_':
				c = '-'
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			}
			same = c == s[i]
		}
		if same {
			return true
		}
	}
	return false
}

// respHead is a parsed response head.
type respHead struct {
	status        []byte // "200 OK": the status line after the version
	code          int
	http10        bool
	contentLength int64 // -1: none
	chunked       bool
	close         bool
	keepAlive     bool // HTTP/1.0 with Connection: keep-alive
	hasDate       bool
	varyAE        bool // Vary names Accept-Encoding (or *)
	noTransform   bool
	contentRange  bool
	contentType   []byte
	encoding      []byte   // Content-Encoding
	csp           []byte   // Content-Security-Policy
	etag          int      // index of the ETag field, -1 for none
	connTokens    [][]byte // other fields named in Connection (not passed on)
	fields        []field
}

var errBadResponse = errors.New("malformed response head from the upstream")

// parseResponseHead parses an upstream's response head into h.
func parseResponseHead(head []byte, h *respHead) error {
	fields, toks := h.fields[:0], h.connTokens[:0]
	*h = respHead{contentLength: -1, etag: -1}
	line, rest, ok := cutLine(head)
	if !ok || len(line) < 12 || line[8] != ' ' {
		return errBadResponse
	}
	switch string(line[:8]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.http10 = true
	default:
		return errBadResponse
	}
	h.status = line[9:]
	code := 0
	for _, c := range h.status[:3] {
		if c < '0' || c > '9' {
			return errBadResponse
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || len(h.status) > 3 && h.status[3] != ' ' {
		return errBadResponse
	}
	for _, c := range h.status {
		if c < ' ' && c != '\t' || c == 0x7f {
			return errBadResponse
		}
	}
	h.code = code
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return errBadResponse
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := splitField(line)
		if !ok {
			return errBadResponse
		}
		kind := hOther
		switch {
		case eqFold(name, "content-length"):
			n, ok := parseDecimal(value)
			if !ok || h.contentLength >= 0 && h.contentLength != n {
				return errBadResponse
			}
			h.contentLength = n
			kind = hSkip // written again below, once
		case eqFold(name, "transfer-encoding"):
			if !eqFold(value, "chunked") || h.chunked {
				return errBadResponse // net/http's client refuses the others too
			}
			h.chunked = true
			kind = hSkip
		case eqFold(name, "connection"):
			eachToken(value, func(tok []byte) bool {
				switch {
				case eqFold(tok, "close"):
					h.close = true
				case eqFold(tok, "keep-alive"):
					h.keepAlive = true
				default:
					toks = append(toks, tok)
				}
				return true
			})
			kind = hSkip
		case eqFold(name, "keep-alive"), eqFold(name, "proxy-connection"), eqFold(name, "te"),
			eqFold(name, "upgrade"), eqFold(name, "proxy-authenticate"):
			kind = hSkip
		case eqFold(name, "date"):
			h.hasDate = true
		case eqFold(name, "content-type"):
			h.contentType = value
		case eqFold(name, "content-encoding"):
			h.encoding = value
		case eqFold(name, "content-security-policy"):
			h.csp = value
		case eqFold(name, "etag"):
			h.etag = len(fields)
		case eqFold(name, "content-range"):
			h.contentRange = true
		case eqFold(name, "cache-control"):
			if containsFold(value, "no-transform") {
				h.noTransform = true
			}
		case eqFold(name, "vary"):
			eachToken(value, func(tok []byte) bool {
				h.varyAE = h.varyAE || eqFold(tok, "accept-encoding") || string(tok) == "*"
				return true
			})
		}
		fields = append(fields, field{name: name, value: value, kind: kind})
	}
	if len(rest) != 0 {
		return errBadResponse
	}
	if h.chunked {
		h.contentLength = -1 // Transfer-Encoding wins (RFC 9112 6.3)
	}
	for i := range fields {
		for _, tok := range toks {
			if eqFold(fields[i].name, string(tok)) {
				fields[i].kind = hSkip
			}
		}
	}
	h.fields, h.connTokens = fields, toks
	return nil
}

// splitField splits a field line into a token name and a value without
// surrounding whitespace, refusing what RFC 9110 does not allow.
func splitField(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	name, value = line[:colon], trimOWS(line[colon+1:])
	for _, c := range name {
		if !httpguts.IsTokenRune(rune(c)) {
			return nil, nil, false
		}
	}
	return name, value, httpguts.ValidHeaderFieldValue(string(value))
}

// eachToken calls fn with each non-empty element of a comma-separated
// list, trimmed, until fn returns false; it reports whether none did.
func eachToken(list []byte, fn func(tok []byte) bool) bool {
	for len(list) > 0 {
		tok := list
		if i := bytes.IndexByte(list, ','); i >= 0 {
			tok, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		if tok = trimOWS(tok); len(tok) > 0 && !fn(tok) {
			return false
		}
	}
	return true
}

// bodyless reports whether a response to method with this code has no
// body whatever its fields say.
func bodyless(method []byte, code int) bool {
	return string(method) == "HEAD" || code == 204 || code == 304 || code < 200
}

// cutLine splits the first CRLF-terminated line off b; a bare CR or LF
// inside the line fails.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// eqFold compares an ASCII name case-insensitively with s.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if c|0x20 != d|0x20 || (c|0x20 < 'a' || c|0x20 > 'z') && c != d {
			return false
		}
	}
	return true
}

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if eqFold(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}

// parseDecimal parses a Content-Length: digits only, no sign, no overflow.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseChunkSize parses a chunk-size line (without CRLF): hex digits and
// optional extensions after ';', no spaces (net/http's reader refuses
// some, so none are taken).
func parseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}
