package webfilter

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"html"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// Page is what a page's HTML says, for phrase scoring and phishing
// checks: its title, its visible text (tags, scripts and styles left
// out, entities decoded) in Normalize's form (lower case, words one
// space apart: give it to Scores.Normalized), and its password forms.
type Page struct {
	Title string
	Text  []byte
	// PasswordForm is true if the page has an <input type=password>;
	// FormActions are the action attributes of its forms.
	PasswordForm bool
	FormActions  []string
}

// ParseHTML reads the page in b (a prefix of one is fine: it stops where
// the bytes do). It is a scanner for filtering, not a browser's parser:
// one pass, tags skipped, the contents of script, style, template,
// noscript and comments left out, entities decoded (html.UnescapeString),
// and the few attributes the checks need read: input type, form action,
// meta description and keywords, img alt and title. (It replaced
// x/net/html's tokenizer here, which cost three times as much per page;
// TestParseHTMLAgreesWithTokenizer holds the two to the same text.)
func ParseHTML(b []byte) Page {
	var p Page
	text := make([]byte, 0, len(b))
	space := true
	raw := func(seg []byte) { text = appendNorm(text, seg, &space) }
	addText := func(seg []byte) {
		if len(seg) == 0 {
			return
		}
		if bytes.IndexByte(seg, '&') >= 0 {
			raw([]byte(html.UnescapeString(string(seg))))
		} else {
			raw(seg)
		}
		raw(sep)
	}
	i := 0
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			addText(b[i:])
			break
		}
		addText(b[i : i+j])
		i += j
		rest := b[i:]
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			k := bytes.Index(rest[4:], []byte("-->"))
			if k < 0 {
				i = len(b)
			} else {
				i += 4 + k + 3
			}
			continue
		case len(rest) > 1 && (rest[1] == '!' || rest[1] == '?'):
			k := bytes.IndexByte(rest, '>')
			if k < 0 {
				i = len(b)
			} else {
				i += k + 1
			}
			continue
		case len(rest) > 2 && rest[1] == '/' && isLetter(rest[2]):
			k := bytes.IndexByte(rest, '>')
			if k < 0 {
				i = len(b)
			} else {
				i += k + 1
			}
			raw(sep)
			continue
		case len(rest) < 2 || !isLetter(rest[1]):
			addText(rest[:1]) // a lone "<" is text
			i++
			continue
		}
		// A start tag: its name, then its attributes up to ">".
		n := 1
		for n < len(rest) && (isLetter(rest[n]) || rest[n] >= '0' && rest[n] <= '9') {
			n++
		}
		var nb [16]byte
		name := nb[:0]
		if n-1 <= len(nb) {
			for _, c := range rest[1:n] {
				if c >= 'A' && c <= 'Z' {
					c += 'a' - 'A'
				}
				name = append(name, c)
			}
		}
		attrs, end := readAttrs(rest, n)
		i += end
		switch string(name) {
		case "script", "style", "template", "noscript":
			i = skipPast(b, i, string(name))
			raw(sep)
		case "textarea", "xmp", "iframe", "noembed", "noframes":
			// Raw text up to the end tag: words, but no tags inside.
			k := closing(b, i, string(name))
			if string(name) == "textarea" {
				addText(b[i:k])
			} else {
				raw(b[i:k])
				raw(sep)
			}
			i = skipPast(b, k, string(name))
		case "title":
			k := closing(b, i, "title")
			t := html.UnescapeString(string(b[i:k]))
			p.Title += t
			raw([]byte(t))
			raw(sep)
			i = skipPast(b, k, "title")
		case "input":
			if strings.EqualFold(attrs["type"], "password") {
				p.PasswordForm = true
			}
		case "form":
			p.FormActions = append(p.FormActions, attrs["action"])
		case "meta":
			if n := strings.ToLower(attrs["name"]); n == "description" || n == "keywords" {
				raw([]byte(attrs["content"]))
				raw(sep)
			}
		case "img":
			raw([]byte(attrs["alt"]))
			raw(sep)
			raw([]byte(attrs["title"]))
			raw(sep)
		default:
			raw(sep)
		}
	}
	if len(text) > 0 && text[len(text)-1] == ' ' {
		text = text[:len(text)-1]
	}
	p.Text = text
	p.Title = strings.TrimSpace(p.Title)
	return p
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

var sep = []byte{' '}

// wanted are the attributes ParseHTML keeps.
var wanted = map[string]bool{"type": true, "action": true, "name": true, "content": true, "alt": true, "title": true}

// readAttrs reads a start tag's attributes from t[n:] up to its ">" and
// returns the wanted ones (values unescaped) and the index after ">".
func readAttrs(t []byte, n int) (map[string]string, int) {
	var attrs map[string]string
	i := n
	for i < len(t) {
		for i < len(t) && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r' || t[i] == '\f' || t[i] == '/') {
			i++
		}
		if i >= len(t) {
			break
		}
		if t[i] == '>' {
			return attrs, i + 1
		}
		ks := i
		for i < len(t) && t[i] != '=' && t[i] != '>' && t[i] != ' ' && t[i] != '\t' && t[i] != '\n' && t[i] != '\r' && t[i] != '\f' && t[i] != '/' {
			i++
		}
		key := t[ks:i]
		for i < len(t) && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r' || t[i] == '\f') {
			i++
		}
		var val []byte
		if i < len(t) && t[i] == '=' {
			i++
			for i < len(t) && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r' || t[i] == '\f') {
				i++
			}
			if i < len(t) && (t[i] == '"' || t[i] == '\'') {
				q := t[i]
				k := bytes.IndexByte(t[i+1:], q)
				if k < 0 {
					val, i = t[i+1:], len(t)
				} else {
					val, i = t[i+1:i+1+k], i+1+k+1
				}
			} else {
				vs := i
				for i < len(t) && t[i] != '>' && t[i] != ' ' && t[i] != '\t' && t[i] != '\n' && t[i] != '\r' && t[i] != '\f' {
					i++
				}
				val = t[vs:i]
			}
		}
		if len(key) > 0 && len(key) <= 8 {
			var kb [8]byte
			for j, c := range key {
				if c >= 'A' && c <= 'Z' {
					c += 'a' - 'A'
				}
				kb[j] = c
			}
			if wanted[string(kb[:len(key)])] {
				k := string(kb[:len(key)])
				if attrs == nil {
					attrs = map[string]string{}
				}
				if _, dup := attrs[k]; !dup { // the first wins, as in browsers
					attrs[k] = html.UnescapeString(string(val))
				}
			}
		}
	}
	return attrs, len(t)
}

// closing is the index of the "</name" that ends raw text starting at
// i (case-insensitive), or len(b).
func closing(b []byte, i int, name string) int {
	for i < len(b) {
		k := bytes.Index(b[i:], []byte("</"))
		if k < 0 {
			return len(b)
		}
		i += k
		if len(b)-i-2 >= len(name) && strings.EqualFold(string(b[i+2:i+2+len(name)]), name) {
			return i
		}
		i += 2
	}
	return len(b)
}

// skipPast is the index after the end tag of name at or after i.
func skipPast(b []byte, i int, name string) int {
	k := closing(b, i, name)
	if k >= len(b) {
		return len(b)
	}
	e := bytes.IndexByte(b[k:], '>')
	if e < 0 {
		return len(b)
	}
	return k + e + 1
}

// ErrEncoding is a Content-Encoding the scanner cannot decode.
var ErrEncoding = errors.New("content-encoding not supported")

// Peek reads at most max decoded bytes of a body sent with encoding
// (gzip, br, zstd, deflate or identity) from r. It returns them and the
// raw bytes it took from r (at most rawMax; the decoders may read ahead),
// which the caller sends on before the rest of r: nothing is lost and the
// client gets the body as the upstream encoded it.
func Peek(r io.Reader, encoding string, max, rawMax int) (decoded, raw []byte, err error) {
	var buf bytes.Buffer
	tee := io.TeeReader(io.LimitReader(r, int64(rawMax)), &buf)
	var dec io.Reader
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
		dec = tee
	case "gzip", "x-gzip":
		g, err := gzip.NewReader(tee)
		if err != nil {
			return nil, buf.Bytes(), fmt.Errorf("gzip: %w", err)
		}
		defer g.Close()
		dec = g
	case "br":
		dec = brotli.NewReader(tee)
	case "zstd":
		z, err := zstd.NewReader(tee, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
		if err != nil {
			return nil, buf.Bytes(), fmt.Errorf("zstd: %w", err)
		}
		defer z.Close()
		dec = z
	case "deflate":
		f := flate.NewReader(tee)
		defer f.Close()
		dec = f
	default:
		return nil, nil, fmt.Errorf("%w: %q", ErrEncoding, encoding)
	}
	out := make([]byte, 0, min(max, 64<<10))
	out, err = readUpTo(dec, out, max)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil // a prefix, or a body cut at rawMax: scan what there is
	}
	return out, buf.Bytes(), err
}

func readUpTo(r io.Reader, out []byte, max int) ([]byte, error) {
	for len(out) < max {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := r.Read(out[len(out):min(cap(out), max)])
		out = out[:len(out)+n]
		if err != nil {
			return out, err
		}
	}
	return out, nil
}
