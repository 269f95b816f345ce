package dnsd

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
)

// DNS over QUIC (RFC 9250): a query on its own bidirectional stream, as a
// 2-byte length and the message with id 0, the client's side closed after
// it; the answer the same way, then the stream closed.

// DoQ error codes (RFC 9250 4.3).
const (
	doqNoError       = 0x0
	doqInternalError = 0x1
	doqProtocolError = 0x2
)

// doqALPN is the token client and server agree on (RFC 9250 4.1.1).
const doqALPN = "doq"

func doqConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:        30 * time.Second,
		MaxIncomingStreams:    256, // queries in flight on one connection
		MaxIncomingUniStreams: -1,  // DoQ uses none
		KeepAlivePeriod:       0,
	}
}

// serveDoQ accepts connections until ctx ends.
func (s *Server) serveDoQ(ctx context.Context, l *quic.Listener) {
	for {
		conn, err := l.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("doq listener stopped", "err", err)
			}
			return
		}
		go s.doqConn(ctx, conn)
	}
}

func (s *Server) doqConn(ctx context.Context, conn *quic.Conn) {
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		client = ap.Addr().Unmap()
	}
	c := caller{addr: client, via: viaDoQ, encrypted: true, sni: conn.ConnectionState().TLS.ServerName}
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			return // the client went, idled out, or Ops stops
		}
		go func() {
			if err := s.doqStream(st, c); err != nil {
				s.log.Debug("doq", "client", client, "err", err)
				_ = conn.CloseWithError(doqProtocolError, err.Error())
			}
		}()
	}
}

// errDoQProtocol: the client broke RFC 9250; its connection is closed
// with DOQ_PROTOCOL_ERROR.
var errDoQProtocol = errors.New("doq protocol error")

func (s *Server) doqStream(st *quic.Stream, c caller) error {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(s.cfg.Timeout.D() + 5*time.Second))
	req, err := readDoQ(st)
	if err != nil {
		st.CancelRead(doqProtocolError)
		return err
	}
	// RFC 9250 4.2.1: the id must be 0, and the edns-tcp-keepalive option
	// must not be sent.
	if req.Id != 0 {
		return fmt.Errorf("%w: message id %d, want 0", errDoQProtocol, req.Id)
	}
	if o := req.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if opt.Option() == dns.EDNS0TCPKEEPALIVE {
				return fmt.Errorf("%w: edns-tcp-keepalive", errDoQProtocol)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout.D()+time.Second)
	defer cancel()
	resp := s.resolve(ctx, req, c)
	if err := writeDoQ(st, resp); err != nil {
		st.CancelWrite(doqInternalError)
		return nil // the client's stream is gone; not the connection's fault
	}
	return nil
}

// readDoQ reads one length-prefixed message and the end of the stream.
func readDoQ(r io.Reader) (*dns.Msg, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("%w: length: %v", errDoQProtocol, err)
	}
	size := int(binary.BigEndian.Uint16(n[:]))
	if size < 12 {
		return nil, fmt.Errorf("%w: message of %d bytes", errDoQProtocol, size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: message: %v", errDoQProtocol, err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return nil, fmt.Errorf("%w: %v", errDoQProtocol, err)
	}
	return m, nil
}

func writeDoQ(w io.Writer, m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	out := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	copy(out[2:], b)
	_, err = w.Write(out)
	return err
}

// listenDoQ opens dns.doq_listen.
func (s *Server) listenDoQ(addr string, cert tls.Certificate) (*quic.Listener, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{doqALPN}}
	l, err := quic.Listen(pc, tc, doqConfig())
	if err != nil {
		pc.Close()
		return nil, err
	}
	return l, nil
}

// doqUp is a DNS over QUIC upstream (quic://host[:853]): one connection,
// a stream a query, dialled again when it fails.
type doqUp struct {
	addr, host string
	tls        *tls.Config
	timeout    time.Duration
	dial       *dialer

	mu   sync.Mutex
	conn *quic.Conn
}

func (d *doqUp) String() string { return "quic://" + d.addr }

func (d *doqUp) connect(ctx context.Context) (*quic.Conn, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil && d.conn.Context().Err() == nil {
		return d.conn, true, nil
	}
	host, port, err := net.SplitHostPort(d.addr)
	if err != nil {
		return nil, false, err
	}
	if ip, ok := d.dial.boot[strings.ToLower(host)]; ok {
		host = ip
	} else if net.ParseIP(host) == nil {
		return nil, false, fmt.Errorf("upstream host %s has no address in dns.bootstrap", host)
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, err := quic.DialAddr(ctx, net.JoinHostPort(host, port), d.tls, doqConfig())
	if err != nil {
		return nil, false, err
	}
	d.conn = c
	return c, false, nil
}

func (d *doqUp) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := d.connect(ctx)
		if err != nil {
			return nil, err
		}
		r, err := d.ask(ctx, c, m)
		if err == nil {
			return r, nil
		}
		d.mu.Lock()
		if d.conn == c {
			d.conn = nil
			_ = c.CloseWithError(doqNoError, "")
		}
		d.mu.Unlock()
		// A reused connection the server closed while idle: once more.
		if !reused || attempt > 0 {
			return nil, err
		}
	}
}

func (d *doqUp) ask(ctx context.Context, c *quic.Conn, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	q := m.Copy()
	q.Id = 0
	if err := writeDoQ(st, q); err != nil {
		st.CancelRead(doqNoError)
		return nil, err
	}
	_ = st.Close() // our side done: the FIN the server waits for
	r, err := readDoQ(st)
	if err != nil {
		return nil, err
	}
	r.Id = m.Id
	return r, nil
}
