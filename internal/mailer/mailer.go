// Package mailer sends e-mail through the configured SMTP server: an HTML
// body with a plain-text alternative and inline images (multipart/related
// inside multipart/alternative, as mail clients expect), over STARTTLS,
// implicit TLS or plain SMTP.
package mailer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/config"
)

// Inline is an image the HTML shows as <img src="cid:ID">.
type Inline struct {
	ID, ContentType string
	Data            []byte
}

// Message is one e-mail.
type Message struct {
	To      []string
	Subject string
	Text    string
	HTML    string
	Inline  []Inline
}

// Build renders m as RFC 5322 bytes with the given sender.
func Build(from string, m *Message, now time.Time) ([]byte, error) {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", from)
	h("To", strings.Join(m.To, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", now.Format(time.RFC1123Z))
	domain := "ops.local"
	if a, err := mail.ParseAddress(from); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok {
			domain = d
		}
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	h("Message-ID", "<"+hex.EncodeToString(id)+"@"+domain+">")
	h("MIME-Version", "1.0")
	alt := multipart.NewWriter(&b)
	h("Content-Type", "multipart/alternative; boundary="+alt.Boundary())
	b.WriteString("\r\n")
	part := func(w *multipart.Writer, ct string, extra textproto.MIMEHeader, body []byte, base64Body bool) error {
		hd := textproto.MIMEHeader{"Content-Type": {ct}}
		for k, v := range extra {
			hd[k] = v
		}
		if base64Body {
			hd.Set("Content-Transfer-Encoding", "base64")
		} else {
			hd.Set("Content-Transfer-Encoding", "quoted-printable")
		}
		pw, err := w.CreatePart(hd)
		if err != nil {
			return err
		}
		return writeBody(pw, body, base64Body)
	}
	if err := part(alt, "text/plain; charset=utf-8", nil, []byte(m.Text), false); err != nil {
		return nil, err
	}
	var rel bytes.Buffer
	rw := multipart.NewWriter(&rel)
	if err := part(rw, "text/html; charset=utf-8", nil, []byte(m.HTML), false); err != nil {
		return nil, err
	}
	for _, in := range m.Inline {
		extra := textproto.MIMEHeader{"Content-Id": {"<" + in.ID + ">"}, "Content-Disposition": {"inline"}}
		if err := part(rw, in.ContentType, extra, in.Data, true); err != nil {
			return nil, err
		}
	}
	if err := rw.Close(); err != nil {
		return nil, err
	}
	pw, err := alt.CreatePart(textproto.MIMEHeader{"Content-Type": {"multipart/related; boundary=" + rw.Boundary()}})
	if err != nil {
		return nil, err
	}
	if _, err := pw.Write(rel.Bytes()); err != nil {
		return nil, err
	}
	if err := alt.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeBody(w interface{ Write([]byte) (int, error) }, body []byte, b64 bool) error {
	if b64 {
		enc := base64.StdEncoding.EncodeToString(body)
		for len(enc) > 76 {
			if _, err := w.Write([]byte(enc[:76] + "\r\n")); err != nil {
				return err
			}
			enc = enc[76:]
		}
		_, err := w.Write([]byte(enc + "\r\n"))
		return err
	}
	qp := newQP(w)
	if _, err := qp.Write(body); err != nil {
		return err
	}
	return qp.Close()
}

// Send delivers m through the server in cfg.
func Send(ctx context.Context, cfg config.SMTP, m *Message) error {
	if cfg.Host == "" {
		return errors.New("smtp.host is not set")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return fmt.Errorf("smtp.from: %w", err)
	}
	raw, err := Build(cfg.From, m, time.Now())
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	d := net.Dialer{Timeout: 15 * time.Second}
	var conn net.Conn
	if cfg.TLS == "tls" {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	deadline := time.Now().Add(time.Minute)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, cfg.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	defer c.Close()
	if cfg.TLS == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(&tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}); err != nil {
				return fmt.Errorf("smtp STARTTLS: %w", err)
			}
		} else if cfg.Username != "" {
			return errors.New("smtp: the server offers no STARTTLS; the password is not sent in clear")
		}
	}
	if cfg.Username != "" {
		pw, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return fmt.Errorf("smtp.password_file: %w", err)
		}
		if err := c.Auth(smtp.PlainAuth("", cfg.Username, strings.TrimSpace(string(pw)), cfg.Host)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
	}
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	for _, to := range m.To {
		a, err := mail.ParseAddress(to)
		if err != nil {
			return fmt.Errorf("recipient %q: %w", to, err)
		}
		if err := c.Rcpt(a.Address); err != nil {
			return fmt.Errorf("smtp RCPT TO %s: %w", a.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	return c.Quit()
}
