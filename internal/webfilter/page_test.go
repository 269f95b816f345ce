package webfilter

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// tokenizerPage is what ParseHTML did with x/net/html's tokenizer before
// it got a scanner of its own: the reference the scanner is held to.
func tokenizerPage(b []byte) Page {
	var p Page
	var text bytes.Buffer
	z := html.NewTokenizer(bytes.NewReader(b))
	skip, inTitle := 0, false
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
			name, _ := z.TagName()
			tag := string(name)
			switch tag {
			case "script", "style", "template", "noscript":
				if tt == html.StartTagToken {
					skip++
				} else if tt == html.EndTagToken && skip > 0 {
					skip--
				}
			case "title":
				inTitle = tt == html.StartTagToken
			}
			attrs := map[string]string{}
			for {
				k, v, more := z.TagAttr()
				if _, dup := attrs[string(k)]; len(k) > 0 && !dup {
					attrs[string(k)] = string(v)
				}
				if !more {
					break
				}
			}
			if tt == html.EndTagToken {
				continue
			}
			switch tag {
			case "input":
				if strings.EqualFold(attrs["type"], "password") {
					p.PasswordForm = true
				}
			case "form":
				p.FormActions = append(p.FormActions, attrs["action"])
			case "meta":
				if n := strings.ToLower(attrs["name"]); n == "description" || n == "keywords" {
					text.WriteString(attrs["content"] + " ")
				}
			case "img":
				text.WriteString(attrs["alt"] + " " + attrs["title"] + " ")
			}
		}
	}
}

var pageCorpus = []string{
	`<html><head><title>Free porn videos</title></head><body><h1>Hardcore porn videos</h1><p>XXX videos &amp; more</p><script>var sex="</p>sex";</script></body></html>`,
	`<!doctype html><HTML><HEAD><TITLE>PayPal: Log &amp; in</TITLE><STYLE>.x{content:"<b>"}</STYLE></HEAD><BODY>
	<form action="https://collect.example/p?a=1&amp;b=2"><input name=u><INPUT TYPE=Password name=p></form><img alt="PayPal logo" title='t "q"'></BODY>`,
	`<p>a < b and c > d, 5<6</p><!-- hidden <p>comment</p> --><p>shown</p><!doctype x><?xml x?>`,
	`<meta name="description" content="Online casino &amp; free spins"><meta name=keywords content=roulette,blackjack><meta property=og:title content=ignored>`,
	`<div data-x='>' class="a>b">text after quoted gt</div><br/><hr />end`,
	`<textarea>inside <b>not a tag</b> &lt;x&gt;</textarea><noscript><p>no js</p></noscript><template><p>tmpl</p></template>after`,
	`<p>entities: &eacute;t&eacute; &#233; &#x41; &nbsp;&copy; &notanentity;</p>`,
	`<title>unclosed title`,
	`<p>cut in the middle of a tag <a href="/x`,
	`<SCRIPT type="text/javascript">if (a < b) { document.write("</scr" + "ipt>"); }</SCRIPT>visible`,
}

// TestParseHTMLAgreesWithTokenizer: the scanner finds the same words,
// title, password forms and form actions as x/net/html's tokenizer on
// ordinary and awkward pages.
func TestParseHTMLAgreesWithTokenizer(t *testing.T) {
	for _, page := range pageCorpus {
		got, want := ParseHTML([]byte(page)), tokenizerPage([]byte(page))
		if g, w := Normalize(string(got.Text)), Normalize(string(want.Text)); g != w {
			t.Errorf("%q:\n text %q\n want %q", page, g, w)
		}
		if got.Title != want.Title || got.PasswordForm != want.PasswordForm || !slices.Equal(got.FormActions, want.FormActions) {
			t.Errorf("%q:\n got  %q %v %q\n want %q %v %q", page, got.Title, got.PasswordForm, got.FormActions, want.Title, want.PasswordForm, want.FormActions)
		}
	}
}
