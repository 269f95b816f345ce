package canon

import (
	"errors"
	"strings"
)

// Errors of Path; each names what is wrong with the path.
var (
	ErrNotOrigin     = errors.New("path: must start with /")
	ErrBadEscape     = errors.New("path: malformed percent-encoding")
	ErrEncodedSlash  = errors.New("path: encoded / or \\ (%2F, %5C) is refused")
	ErrBackslash     = errors.New("path: \\ is refused")
	ErrNUL           = errors.New("path: NUL (%00) is refused")
	ErrDotParameters = errors.New("path: a dot segment with parameters (..; or .;) is refused")
)

// Options change how Path treats what RFC 3986 leaves to the server.
type Options struct {
	// KeepEncodedSlash keeps %2F and %5C as they are (upper-cased) instead
	// of refusing them; they then stay inside their segment.
	KeepEncodedSlash bool
}

// Path returns the canonical form of an escaped request path (the path
// of an origin-form request target, without the query):
//
//   - percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are
//     decoded, every other escape is kept with upper-case hex, and bytes
//     that may not appear raw in a path are escaped;
//   - empty segments are removed (//a -> /a), then dot segments (RFC 3986
//     5.2.4: /a/./b -> /a/b, /a/../b -> /b, never above the root);
//   - NUL, a raw '\', an escaped '/' or '\' (unless kept), a malformed
//     escape and a ".." or "." segment carrying ;parameters are errors.
//
// A path already in canonical form is returned as it is, without
// allocating.
func Path(p string, o Options) (string, error) {
	if p == "" || p[0] != '/' {
		return "", ErrNotOrigin
	}
	if IsCanonical(p) {
		return p, nil
	}
	// Decode what must be decoded and escape what must be escaped; the
	// result has raw '/' only where the client wrote one.
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", ErrBadEscape
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			switch {
			case v == 0:
				return "", ErrNUL
			case v == '/' || v == '\\':
				if !o.KeepEncodedSlash {
					return "", ErrEncodedSlash
				}
				writeEscape(&b, v)
			case unreserved(v):
				b.WriteByte(v)
			default:
				writeEscape(&b, v)
			}
		case c == 0:
			return "", ErrNUL
		case c == '\\':
			return "", ErrBackslash
		case c == '/' || pathChar(c):
			b.WriteByte(c)
		default:
			writeEscape(&b, c)
		}
	}
	return removeDots(b.String())
}

// removeDots merges empty segments and resolves dot segments; a trailing
// slash (or a final "." or "..") leaves the path ending in '/'.
func removeDots(p string) (string, error) {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		name := s
		if j := strings.IndexByte(s, ';'); j >= 0 {
			name = s[:j]
			if name == "." || name == ".." {
				return "", ErrDotParameters
			}
		}
		switch s {
		case "":
			trailing = last
			continue
		case ".":
			trailing = last
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
			continue
		}
		trailing = false
		out = append(out, s)
	}
	if len(out) == 0 {
		return "/", nil
	}
	r := "/" + strings.Join(out, "/")
	if trailing {
		r += "/"
	}
	return r, nil
}

// IsCanonical reports whether p (starting with '/') is already in the
// form Path returns, with one pass and no allocation: the fast path asks
// it of every request.
func IsCanonical[T string | []byte](p T) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if !pathChar(p[i]) {
				return false
			}
			continue
		}
		seg := p[start:i]
		if len(seg) == 0 {
			return i == len(p) // empty only at the end: "/" or a trailing slash
		}
		if dotName(seg) {
			return false
		}
		start = i + 1
	}
	return true
}

// dotName reports whether a segment is ".", "..", or either with
// ;parameters.
func dotName[T string | []byte](s T) bool {
	n := len(s)
	for j := 0; j < len(s); j++ {
		if s[j] == ';' {
			n = j
			break
		}
	}
	return n == 1 && s[0] == '.' || n == 2 && s[0] == '.' && s[1] == '.'
}

// pathChar reports whether c may appear raw in a canonical path: RFC 3986
// pchar without '%' (unreserved, sub-delims, ':' and '@').
func pathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}

func unreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func writeEscape(b *strings.Builder, c byte) {
	const hex = "0123456789ABCDEF"
	b.WriteByte('%')
	b.WriteByte(hex[c>>4])
	b.WriteByte(hex[c&15])
}
