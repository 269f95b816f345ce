package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsgraph/ops/internal/webfilter"
)

var errDenied = errors.New("address denied by proxy.forward.deny_networks or deny_own_addresses")

// ownAddr reports whether ip is an address of one of this machine's
// interfaces (or unspecified, which reaches them all).
func (p *Proxy) ownAddr(ip netip.Addr) bool {
	if ip.IsUnspecified() || ip.IsLoopback() {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.own == nil || time.Since(p.ownAt) > time.Minute {
		p.own, p.ownAt = map[netip.Addr]bool{}, time.Now()
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if pfx, err := netip.ParsePrefix(a.String()); err == nil {
					p.own[pfx.Addr().Unmap()] = true
				}
			}
		}
	}
	return p.own[ip]
}

// dial connects to addr after resolving it, refusing addresses in
// deny_networks (the check is on what the name resolves to now, so a
// name rebound to an internal address is refused as well).
func (p *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if a, ok := p.hosts[strings.ToLower(host)]; ok {
		ips = []netip.Addr{a}
	} else if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	var errs []error
	for _, ip := range ips {
		ip = ip.Unmap()
		if inAny(p.deny, ip) || p.cfg.DenyOwn && p.ownAddr(ip) {
			errs = append(errs, fmt.Errorf("%s: %w", ip, errDenied))
			continue
		}
		c, err := p.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%s: no address", host)
	}
	return nil, errors.Join(errs...)
}

// tunnel answers CONNECT: dial, 200, then (with the filter on) a look
// at the TLS ClientHello's server name, then bytes both ways until
// either side closes or idles out.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request, st *reqState) {
	b, start := st.b, st.start
	dialHost := b.Host
	if p.filter.cfg.SafeSearch {
		if h := webfilter.SafeSearchHost(b.Host); h != "" {
			dialHost, b.SafeSearch = h, true
		}
	}
	if p.icpt != nil && !hostMatches(p.cfg.Intercept.Bypass, b.Host) {
		hj, ok := w.(http.Hijacker)
		if !ok {
			page(w, http.StatusInternalServerError, "Cannot tunnel", "this connection cannot be taken over")
			return
		}
		conn, rw, err := hj.Hijack()
		if err != nil {
			return
		}
		b.Status = http.StatusOK
		_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		var pre io.Reader
		if rw != nil && rw.Reader.Buffered() > 0 {
			pre = io.LimitReader(rw.Reader, int64(rw.Reader.Buffered()))
		}
		p.intercept(conn, pre, st)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	up, err := p.dial(ctx, "tcp", net.JoinHostPort(dialHost, strconv.Itoa(b.Port)))
	cancel()
	if err != nil {
		code := http.StatusBadGateway
		b.Action = "error"
		if errors.Is(err, errDenied) {
			code, b.Action = http.StatusForbidden, "block"
		}
		b.Status, b.Reason = code, err.Error()
		p.record(b, start)
		page(w, code, "Cannot reach "+b.Host, err.Error())
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		page(w, http.StatusInternalServerError, "Cannot tunnel", "this connection cannot be taken over")
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	b.Status = http.StatusOK
	_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	var wg sync.WaitGroup
	var in, out int64
	copyIdle := func(dst, src net.Conn, n *int64, pre io.Reader) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		if pre != nil {
			if k, _ := io.Copy(dst, pre); k > 0 {
				*n += k
			}
		}
		for {
			_ = src.SetReadDeadline(time.Now().Add(p.cfg.IdleTimeout.D()))
			k, err := src.Read(buf)
			if k > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(p.cfg.IdleTimeout.D()))
				if _, werr := dst.Write(buf[:k]); werr != nil {
					break
				}
				*n += int64(k)
			}
			if err != nil {
				break
			}
		}
		// Half-close where we can, so the other side sees the end.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	var pre io.Reader
	if rw != nil && rw.Reader.Buffered() > 0 {
		pre = io.LimitReader(rw.Reader, int64(rw.Reader.Buffered()))
	}
	if p.filter.cfg.Enabled || p.deps.Phish != nil {
		// The server name the client asks for in its ClientHello must
		// pass too: a tunnel to an allowed host must not carry a blocked
		// one (domain fronting), and a tunnel to an address is judged by
		// the name in it.
		src := io.Reader(conn)
		if pre != nil {
			src = io.MultiReader(pre, conn)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		hello, sni := peekSNI(src)
		_ = conn.SetReadDeadline(time.Time{})
		if pre != nil {
			pre = io.MultiReader(bytes.NewReader(hello), pre)
		} else {
			pre = bytes.NewReader(hello)
		}
		if h, err := webfilter.CanonHost(sni); err == nil && sni != "" {
			b.SNI = h
			if h != b.Host {
				ss := &reqState{b: &browse{}, id: st.id, client: st.client, host: h, who: st.who}
				if st.set != nil {
					ss.set, ss.sc = st.set, st.set.NewScores()
					ss.sc.URL(&url.URL{Scheme: "https", Host: h})
				}
				if p.deps.Phish != nil {
					if v, err := p.deps.Phish.Check(h, true); err == nil {
						ss.phish = &v
					}
				}
				if action, name := p.decideFor(ss); action == "block" || action == "warn" {
					b.Action, b.Category, b.Score = action, ss.b.Category, ss.b.Score
					b.Reason = "server name " + h + " in the tunnel: rule " + name
					p.n.WithLabelValues("connect", action).Inc()
					p.record(b, start)
					conn.Close()
					up.Close()
					return
				}
			}
		}
	}
	wg.Add(2)
	go copyIdle(up, conn, &out, pre)
	go copyIdle(conn, up, &in, nil)
	wg.Wait()
	conn.Close()
	up.Close()
	b.BytesIn, b.BytesOut = in, out
	p.record(b, start)
}

// peekSNI reads the client's TLS ClientHello from r and returns the
// bytes it read (to send on to the upstream) and the server name in it;
// "" when the client does not speak TLS or names no server.
func peekSNI(r io.Reader) (read []byte, sni string) {
	var buf bytes.Buffer
	c := helloConn{r: io.TeeReader(io.LimitReader(r, 64<<10), &buf)}
	_ = tls.Server(c, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = h.ServerName
		return nil, errHelloRead
	}}).Handshake()
	return buf.Bytes(), sni
}

var errHelloRead = errors.New("client hello read")

// helloConn is a net.Conn that reads from r and drops what is written
// (the alert the aborted handshake sends).
type helloConn struct{ r io.Reader }

func (c helloConn) Read(b []byte) (int, error)     { return c.r.Read(b) }
func (c helloConn) Write(b []byte) (int, error)    { return len(b), nil }
func (helloConn) Close() error                     { return nil }
func (helloConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (helloConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (helloConn) SetDeadline(time.Time) error      { return nil }
func (helloConn) SetReadDeadline(time.Time) error  { return nil }
func (helloConn) SetWriteDeadline(time.Time) error { return nil }
