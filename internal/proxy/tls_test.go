package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// selfSigned writes a certificate for host and returns its files and the
// parsed certificate.
func selfSigned(t *testing.T, dir, host string) (string, string, *x509.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{host},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	cf, kf := filepath.Join(dir, host+".pem"), filepath.Join(dir, host+".key")
	_ = os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	c, _ := x509.ParseCertificate(der)
	return cf, kf, c
}

// TestTLSAndHTTP2: the TLS listener picks the certificate by SNI, speaks
// HTTP/2, and tells the upstream the request came over https.
func TestTLSAndHTTP2(t *testing.T) {
	dir := t.TempDir()
	ac, ak, acert := selfSigned(t, dir, "a.test")
	bc, bk, bcert := selfSigned(t, dir, "b.test")
	up, _ := echoUpstream(t, "up")
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Proxy.Listen = "127.0.0.1:0"
		c.Proxy.TLSListen = "127.0.0.1:0"
		c.Proxy.Certificates = []config.CertPair{{Cert: ac, Key: ak}, {Cert: bc, Key: bk}}
		c.Proxy.Routes = []config.Route{{Name: "r", Upstreams: config.Strings{up.URL}}}
	})
	var addr string
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p := r.App.Proxy(); p != nil && len(p.Addrs()) == 2 {
			addr = p.Addrs()[1].String()
			return nil
		}
		return io.ErrUnexpectedEOF
	})
	pool := x509.NewCertPool()
	pool.AddCert(acert)
	pool.AddCert(bcert)
	for _, host := range []string{"a.test", "b.test"} {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: host},
			ForceAttemptHTTP2: true,
			DialTLSContext:    nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		}
		resp, err := (&http.Client{Transport: tr}).Get("https://" + host + "/x")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		var s seen
		_ = jsonDecode(resp.Body, &s)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.TLS.PeerCertificates[0].Subject.CommonName != host || s.Header.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("%s: proto %s, cert %s, upstream saw proto %q", host, resp.Proto, resp.TLS.PeerCertificates[0].Subject.CommonName, s.Header.Get("X-Forwarded-Proto"))
		}
		tr.CloseIdleConnections()
	}
}

// TestWebSocketEcho uses a real WebSocket server and client
// (golang.org/x/net/websocket) through the proxy.
func TestWebSocketEcho(t *testing.T) {
	up := httptestServer(t, websocket.Handler(func(ws *websocket.Conn) { _, _ = io.Copy(ws, ws) }))
	_, base := startProxy(t, []config.Route{{Name: "ws", Upstreams: config.Strings{up}}}, nil)
	cfg, err := websocket.NewConfig("ws"+base[len("http"):]+"/echo", base)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ws.Close() }()
	for _, msg := range []string{"hello", "through", "the proxy"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := websocket.Message.Receive(ws, &got); err != nil || got != msg {
			t.Fatalf("echo %q: %q %v", msg, got, err)
		}
	}
}
