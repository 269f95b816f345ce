package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
)

// writeCA makes a CA and a server certificate for 127.0.0.1, writes the CA to
// a file and returns it with the server's tls.Config.
func writeCA(t *testing.T) (string, *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ops test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}, MinVersion: tls.VersionTLS12}
}

// An external bus over TLS with a private CA and a user and password.
func TestExternalTLSAndAuth(t *testing.T) {
	caFile, tc := writeCA(t)
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, TLS: true, TLSConfig: tc, TLSTimeout: 2,
		Username: "ops", Password: "s3cret",
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("not ready")
	}
	port := s.Addr().(*net.TCPAddr).Port
	base := config.Default().Bus
	url := func(userinfo string) string {
		return "tls://" + userinfo + "127.0.0.1:" + itoa(port)
	}

	c := base
	c.URL, c.TLS.CA = url("ops:s3cret@"), caFile
	b, err := bus.Open(context.Background(), bus.Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(context.Background(), mkEvents(2, "tls.x")); err != nil {
		t.Fatal(err)
	}
	b.Close()

	// Without the CA the server's certificate is not trusted.
	c = base
	c.URL = url("ops:s3cret@")
	if _, err := bus.Open(context.Background(), bus.Options{Config: c}); err == nil || !bus.IsUnavailable(err) {
		t.Fatalf("untrusted server accepted: %v", err)
	}
	// A wrong password is refused, and the error does not leak the password.
	c = base
	c.URL, c.TLS.CA = url("ops:wrong@"), caFile
	_, err = bus.Open(context.Background(), bus.Options{Config: c})
	if err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("bad password: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
