package mailer_test

import (
	"bytes"
	"context"
	"mime"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/mailer"
	"github.com/opsgraph/ops/internal/testutil"
)

func TestBuildIsValidMail(t *testing.T) {
	raw, err := mailer.Build("Ops <ops@example.com>", &mailer.Message{To: []string{"a@example.com", "B <b@example.com>"}, Subject: "Größe ✓",
		Text: strings.Repeat("long line ", 30), HTML: "<p>x</p>", Inline: []mailer.Inline{{ID: "c", ContentType: "image/png", Data: bytes.Repeat([]byte{0, 1, 2}, 100)}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if to, err := m.Header.AddressList("To"); err != nil || len(to) != 2 {
		t.Fatalf("To: %v %v", to, err)
	}
	if s, _ := new(mimeDecoder).DecodeHeader(m.Header.Get("Subject")); s != "Größe ✓" {
		t.Fatalf("subject %q", s)
	}
	for _, l := range strings.Split(string(raw), "\r\n") {
		if len(l) > 998 {
			t.Fatalf("a line of %d bytes (RFC 5322 allows 998)", len(l))
		}
	}
}

func TestSendToDeadServer(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	err := mailer.Send(context.Background(), config.SMTP{Host: "127.0.0.1", Port: port, From: "ops@example.com", TLS: "none"}, &mailer.Message{To: []string{"a@example.com"}})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("dead server: %v", err)
	}
}

// TestSendThroughAiosmtpd: a message goes through a real SMTP server and
// arrives whole.
func TestSendThroughAiosmtpd(t *testing.T) {
	s := testutil.StartSMTP(t)
	cfg := config.SMTP{Host: s.Host, Port: s.Port, From: "Ops <ops@example.com>", TLS: "starttls"}
	if err := mailer.Send(context.Background(), cfg, &mailer.Message{To: []string{"ann@example.com"}, Subject: "hi", Text: "hello", HTML: "<b>hello</b>"}); err != nil {
		t.Fatal(err)
	}
	got := s.Messages(t)
	if len(got) != 1 || got[0].Header.Get("To") != "ann@example.com" || got[0].Header.Get("Subject") != "hi" {
		t.Fatalf("%d messages", len(got))
	}
	// A password is never sent over a server that offers no TLS.
	cfg.Username, cfg.PasswordFile = "ann", "/dev/null"
	if err := mailer.Send(context.Background(), cfg, &mailer.Message{To: []string{"ann@example.com"}}); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("auth without TLS: %v", err)
	}
}

type mimeDecoder = mime.WordDecoder
