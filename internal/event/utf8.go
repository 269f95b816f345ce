package event

import (
	"bytes"
	"unicode/utf8"
)

// ValidUTF8 returns JSON text b with every byte sequence that is not UTF-8,
// and every \u escape of a lone UTF-16 surrogate, replaced by U+FFFD, so
// that what Ops stores and serves is valid UTF-8 JSON that strict parsers
// read (RFC 8259 8.1). Text already valid is returned as it is, without
// copying. It is how Go's own decoder treats such strings; events are
// kept rather than refused, since a tracking SDK would drop a refused
// batch whole.
func ValidUTF8(b []byte) []byte {
	if utf8.Valid(b) && !hasSurrogateEscape(b) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	inStr := false
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			inStr = !inStr
			out = append(out, c)
			i++
		case inStr && c == '\\' && i+1 < len(b) && b[i+1] == 'u' && i+6 <= len(b):
			r, ok := hex4(b[i+2 : i+6])
			switch {
			case !ok:
				out = append(out, b[i:i+6]...) // left to the JSON check
				i += 6
			case r >= 0xD800 && r <= 0xDBFF:
				// A high surrogate is valid only followed by a low one.
				if i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
					if r2, ok := hex4(b[i+8 : i+12]); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
						out = append(out, b[i:i+12]...)
						i += 12
						continue
					}
				}
				out = append(out, `\ufffd`...)
				i += 6
			case r >= 0xDC00 && r <= 0xDFFF:
				out = append(out, `\ufffd`...)
				i += 6
			default:
				out = append(out, b[i:i+6]...)
				i += 6
			}
		case inStr && c == '\\' && i+1 < len(b):
			out = append(out, c, b[i+1])
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				out = append(out, "\uFFFD"...)
				i++
				continue
			}
			out = append(out, b[i:i+n]...)
			i += n
		}
	}
	return out
}

// hasSurrogateEscape reports whether b holds a \u escape in the surrogate
// range (\uD800 to \uDFFF), valid pair or not: the slow path checks.
func hasSurrogateEscape(b []byte) bool {
	for {
		i := bytes.Index(b, []byte(`\u`))
		if i < 0 || i+3 > len(b) {
			return false
		}
		if (b[i+2] == 'd' || b[i+2] == 'D') && i+3 < len(b) {
			switch b[i+3] {
			case '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'A', 'B', 'C', 'D', 'E', 'F':
				return true
			}
		}
		b = b[i+2:]
	}
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}
