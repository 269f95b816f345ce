package webfilter

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/net/html"
)

// Page is what a page's HTML says, for phrase scoring and phishing
// checks: its title, its visible text (tags, scripts and styles left
// out, entities decoded) and its password forms.
type Page struct {
	Title string
	Text  []byte
	// PasswordForm is true if the page has an <input type=password>;
	// FormActions are the action attributes of its forms.
	PasswordForm bool
	FormActions  []string
}

// ParseHTML reads the page in b (a prefix of one is fine: the tokenizer
// stops where the bytes do).
func ParseHTML(b []byte) Page {
	var p Page
	var text bytes.Buffer
	z := html.NewTokenizer(bytes.NewReader(b))
	skip := 0 // inside script/style/template
	inTitle := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			p.Text = text.Bytes()
			p.Title = strings.TrimSpace(p.Title)
			return p
		case html.TextToken:
			if skip > 0 {
				continue
			}
			t := z.Text()
			if inTitle {
				p.Title += string(t)
			}
			text.Write(t)
			text.WriteByte(' ')
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			end := tt == html.EndTagToken
			switch tag {
			case "script", "style", "template", "noscript":
				if tt == html.StartTagToken {
					skip++
				} else if end && skip > 0 {
					skip--
				}
			case "title":
				inTitle = tt == html.StartTagToken
			}
			if end || !hasAttr {
				if !end && tag != "title" {
					text.WriteByte(' ')
				}
				continue
			}
			var typ, action, alt, content, metaName string
			for {
				k, v, more := z.TagAttr()
				switch string(k) {
				case "type":
					typ = strings.ToLower(string(v))
				case "action":
					action = string(v)
				case "alt", "title":
					alt = string(v)
				case "content":
					content = string(v)
				case "name":
					metaName = strings.ToLower(string(v))
				}
				if !more {
					break
				}
			}
			switch tag {
			case "input":
				if typ == "password" {
					p.PasswordForm = true
				}
			case "form":
				p.FormActions = append(p.FormActions, action)
			case "meta":
				if metaName == "description" || metaName == "keywords" {
					text.WriteString(content)
				}
			case "img":
				text.WriteString(alt)
			}
			text.WriteByte(' ')
		}
	}
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
