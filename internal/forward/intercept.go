package forward

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/webfilter"
)

// interceptor opens HTTPS tunnels: it holds the CA that signs a
// certificate for each host, made on first use and kept for a day less
// than it lasts.
type interceptor struct {
	cfg   config.ForwardIntercept
	ca    *x509.Certificate
	key   crypto.Signer
	pem   []byte
	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

const leafLife = 30 * 24 * time.Hour

func newInterceptor(cfg config.ForwardIntercept, dataDir string) (*interceptor, error) {
	certFile, keyFile := cfg.CACert, cfg.CAKey
	if certFile == "" {
		dir := filepath.Join(dataDir, "forward-ca")
		certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := makeCA(dir, certFile, keyFile); err != nil {
				return nil, fmt.Errorf("proxy.forward.intercept: making a CA: %w", err)
			}
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy.forward.intercept: %w", err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("proxy.forward.intercept: %w", err)
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("proxy.forward.intercept.ca_cert: %s is not a CA certificate", certFile)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("proxy.forward.intercept.ca_key: not a signing key")
	}
	pemBytes, _ := os.ReadFile(certFile)
	return &interceptor{cfg: cfg, ca: ca, key: signer, pem: pemBytes, certs: map[string]*tls.Certificate{}}, nil
}

// makeCA writes a new CA (ECDSA P-256, ten years) and its key (0600).
func makeCA(dir, certFile, keyFile string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "Ops forward proxy CA (" + host + ")", Organization: []string{"Ops"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// cert is the certificate for host, signed by the CA.
func (ic *interceptor) cert(host string) (*tls.Certificate, error) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if c, ok := ic.certs[host]; ok && time.Until(c.Leaf.NotAfter) > 24*time.Hour {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(leafLife),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = []net.IP{ip.AsSlice()}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ic.ca, &key.PublicKey, ic.key)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	c := &tls.Certificate{Certificate: [][]byte{der, ic.ca.Raw}, PrivateKey: key, Leaf: leaf}
	if len(ic.certs) >= 10_000 {
		clear(ic.certs)
	}
	ic.certs[host] = c
	return c, nil
}

// intercept serves the HTTP requests inside a tunnel the client opened
// to st.host: TLS with a certificate for that host, then each request is
// decided and forwarded like a plain one (scheme https).
func (p *Proxy) intercept(conn net.Conn, pre io.Reader, st *reqState) {
	b := st.b
	var c net.Conn = conn
	if pre != nil {
		c = &prefixConn{Conn: conn, r: io.MultiReader(pre, conn)}
	}
	var sniErr error
	tc := tls.Server(c, &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if h.ServerName != "" {
				sni, err := webfilter.CanonHost(h.ServerName)
				if err != nil || sni != st.host {
					sniErr = fmt.Errorf("server name %q is not the tunnel's host %s", h.ServerName, st.host)
					return nil, sniErr
				}
				b.SNI = sni
			}
			return p.icpt.cert(st.host)
		}})
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		b.Action, b.Intercepted = "error", true
		b.Reason = "TLS interception: the client's handshake failed (a client that does not trust Ops's CA, or pins its certificates: add the host to intercept.bypass): " + err.Error()
		if sniErr != nil {
			b.Action, b.Reason = "block", "TLS interception: "+sniErr.Error()
		}
		p.record(b, st.start)
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	b.Intercepted = true
	p.record(b, st.start)
	done := make(chan struct{})
	ln := &oneConn{c: &closeNotify{Conn: tc, done: done}, done: done}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: p.cfg.IdleTimeout.D(), MaxHeaderBytes: 64 << 10,
		ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := r.Host
			if hh, _, err := net.SplitHostPort(h); err == nil {
				h = hh
			}
			if ch, err := webfilter.CanonHost(h); err != nil || ch != st.host {
				page(w, http.StatusMisdirectedRequest, "Misdirected request", "Host: this tunnel is for "+st.host)
				return
			}
			r.URL.Scheme = "https"
			r.URL.Host = st.host
			if st.b.Port != 443 {
				r.URL.Host = net.JoinHostPort(st.host, strconv.Itoa(st.b.Port))
			}
			inner := &reqState{b: &browse{Method: r.Method, User: b.User, Client: b.Client, Host: st.host, Port: b.Port, Intercepted: true},
				id: st.id, client: st.client, host: st.host, who: st.who, start: time.Now(), inner: true}
			p.handle(w, r, inner, "http")
		})}
	_ = srv.Serve(ln)
	<-done
}

// oneConn is a listener that hands out one connection, then waits for
// it to close.
type oneConn struct {
	once sync.Once
	c    net.Conn
	done chan struct{}
}

func (l *oneConn) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *oneConn) Close() error   { return nil }
func (l *oneConn) Addr() net.Addr { return l.c.LocalAddr() }

type closeNotify struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (c *closeNotify) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// prefixConn reads the bytes already buffered first.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// serveCA writes the CA certificate clients install to trust
// interception.
func (p *Proxy) serveCA(w http.ResponseWriter, r *http.Request) {
	if p.icpt == nil {
		page(w, http.StatusNotFound, "No CA", "TLS interception is off (proxy.forward.intercept.enabled)")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="ops-proxy-ca.pem"`)
	_, _ = io.Copy(w, bytes.NewReader(p.icpt.pem))
}
