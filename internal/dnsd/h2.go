package dnsd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
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

	"github.com/miekg/dns"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/reply"
)

// The DoH listener (dns.doh_listen): DNS over HTTPS on a port of its own,
// served by a small HTTP/2 server made for it instead of net/http's. A
// DoH client sends one small request per query, and net/http spends
// more on each than the resolver does: a goroutine per stream (whose
// stack then grows), another per flush, a channel round trip per frame.
// Here one goroutine per connection reads the frames, answers what needs
// no upstream (cache hits, blocks) in place, and flushes once per batch
// of frames read; only a query that must go upstream gets a goroutine.
//
// It speaks HTTP/2 only (ALPN h2, as RFC 8484 recommends and every DoH
// client offers), serves GET and POST /dns-query[/<client token>] with
// the same handling as the main listener's /dns-query, and keeps to
// RFC 9113's rules on streams, flow control and frame sizes. Bounds:
// h2MaxStreams streams open at once (a stream over it, or over the
// queries still waiting on upstreams, is refused: what Rapid Reset
// floods hit), h2MaxHeaderList bytes of headers, a body of at most
// 65,535 bytes, h2Idle without a frame, h2WriteTimeout to take a flush.

const (
	h2MaxStreams    = 128
	h2MaxHeaderList = 16 << 10
	h2Idle          = 2 * time.Minute
	h2WriteTimeout  = 10 * time.Second
	h2ConnWindow    = 1 << 20 // what a client may send before a WINDOW_UPDATE
	h2DefaultWindow = 65535
	h2MaxFrame      = 16384
	h2MaxBody       = 65535
)

// serveH2 accepts connections on l until ctx ends.
func (s *Server) serveH2(ctx context.Context, l net.Listener) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	go func() {
		<-ctx.Done()
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				s.log.Error("doh listener stopped", "err", err)
			}
			wg.Wait()
			return
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.h2Serve(c.(*tls.Conn))
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

// h2Conn is one client connection.
type h2Conn struct {
	s    *Server
	c    net.Conn
	st   *tls.ConnectionState
	br   *bufio.Reader
	bw   *bufio.Writer
	fr   *http2.Framer
	addr string

	mu       sync.Mutex // the writer, the encoder, streams, windows
	enc      *hpack.Encoder
	encBuf   bytes.Buffer
	streams  map[uint32]*h2Stream
	waiting  int // queries answered by goroutines (waiting on upstreams)
	lastID   uint32
	sendWin  int64 // the connection's send window
	initWin  int64 // the client's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame int   // the client's SETTINGS_MAX_FRAME_SIZE
	unacked  int   // DATA bytes taken but not yet returned by WINDOW_UPDATE
	err      error // a write failed: the connection is done
}

// h2Stream is a request being read or answered.
type h2Stream struct {
	id      uint32
	method  string
	path    string
	host    string
	ctype   string
	fields  []hpack.HeaderField
	plain   bool // none of the headers that need the general way
	body    []byte
	tooBig  bool
	sendWin int64
	pending []byte // response DATA waiting for window
	done    bool   // the whole response is written (or the stream reset)
	cancel  context.CancelFunc
}

var errH2Protocol = errors.New("protocol error")

func (s *Server) h2Serve(c *tls.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return
	}
	st := c.ConnectionState()
	if st.NegotiatedProtocol != "h2" {
		return // ALPN offers only h2; a client without ALPN gets nothing
	}
	if err := s.newH2Conn(c, &st).run(); err != nil && !errors.Is(err, io.EOF) {
		s.log.Debug("doh connection", "client", c.RemoteAddr().String(), "err", err)
	}
}

// newH2Conn readies an HTTP/2 connection over c (TLS done: st is its
// state, nil for none).
func (s *Server) newH2Conn(c net.Conn, st *tls.ConnectionState) *h2Conn {
	h := &h2Conn{s: s, c: c, st: st, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 16<<10), addr: c.RemoteAddr().String(),
		streams: map[uint32]*h2Stream{}, sendWin: h2DefaultWindow, initWin: h2DefaultWindow, maxFrame: h2MaxFrame}
	h.enc = hpack.NewEncoder(&h.encBuf)
	h.fr = http2.NewFramer(h.bw, h.br)
	h.fr.SetMaxReadFrameSize(h2MaxFrame)
	h.fr.MaxHeaderListSize = h2MaxHeaderList
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.SetReuseFrames()
	return h
}

// run serves the connection until it ends, then cancels what waits on
// upstreams for it.
func (h *h2Conn) run() error {
	err := h.serve()
	h.mu.Lock()
	for _, st := range h.streams {
		if st.cancel != nil {
			st.cancel()
		}
	}
	h.mu.Unlock()
	return err
}

func (h *h2Conn) serve() error {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(h.br, preface); err != nil || string(preface) != http2.ClientPreface {
		return fmt.Errorf("%w: no HTTP/2 preface", errH2Protocol)
	}
	h.mu.Lock()
	_ = h.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList}, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	_ = h.fr.WriteWindowUpdate(0, h2ConnWindow-h2DefaultWindow)
	err := h.flush()
	h.mu.Unlock()
	if err != nil {
		return err
	}
	var deadline time.Time
	for {
		if h.br.Buffered() == 0 {
			// Everything read is answered: write it out, then wait.
			h.mu.Lock()
			err := h.flush()
			h.mu.Unlock()
			if err != nil {
				return err
			}
			// The idle deadline, moved on now and then (a timer change
			// per request cost more than the rest of reading it).
			if now := time.Now(); now.Sub(deadline) > h2Idle/4 {
				_ = h.c.SetReadDeadline(now.Add(h2Idle))
				deadline = now
			}
		}
		f, err := h.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				h.mu.Lock()
				h.reset(se.StreamID, se.Code)
				h.mu.Unlock()
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				h.goAway(http2.ErrCode(ce))
			}
			return err
		}
		if err := h.frame(f); err != nil {
			h.goAway(http2.ErrCodeProtocol)
			return err
		}
	}
}

// flush writes what is buffered; with h.mu held.
func (h *h2Conn) flush() error {
	if h.err != nil {
		return h.err
	}
	if h.bw.Buffered() == 0 {
		return nil
	}
	_ = h.c.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
	h.err = h.bw.Flush()
	return h.err
}

func (h *h2Conn) goAway(code http2.ErrCode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = h.fr.WriteGoAway(h.lastID, code, nil)
	_ = h.flush()
}

// reset ends a stream with RST_STREAM; with h.mu held.
func (h *h2Conn) reset(id uint32, code http2.ErrCode) {
	if st := h.streams[id]; st != nil {
		st.done = true
		if st.cancel != nil {
			st.cancel()
		}
		delete(h.streams, id)
	}
	_ = h.fr.WriteRSTStream(id, code)
}

func (h *h2Conn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		err := f.ForeachSetting(func(s http2.Setting) error {
			switch s.ID {
			case http2.SettingInitialWindowSize:
				delta := int64(s.Val) - h.initWin
				h.initWin = int64(s.Val)
				for _, st := range h.streams {
					st.sendWin += delta
				}
			case http2.SettingMaxFrameSize:
				h.maxFrame = int(s.Val)
			case http2.SettingHeaderTableSize:
				h.enc.SetMaxDynamicTableSizeLimit(s.Val)
			}
			return nil
		})
		if err != nil {
			return err
		}
		_ = h.fr.WriteSettingsAck()
		h.sendPending()
	case *http2.PingFrame:
		if !f.IsAck() {
			h.mu.Lock()
			_ = h.fr.WritePing(true, f.Data)
			h.mu.Unlock()
		}
	case *http2.WindowUpdateFrame:
		h.mu.Lock()
		defer h.mu.Unlock()
		if f.StreamID == 0 {
			if h.sendWin += int64(f.Increment); h.sendWin > 1<<31-1 {
				return fmt.Errorf("%w: connection window over 2^31-1", errH2Protocol)
			}
		} else if st := h.streams[f.StreamID]; st != nil {
			if st.sendWin += int64(f.Increment); st.sendWin > 1<<31-1 {
				h.reset(f.StreamID, http2.ErrCodeFlowControl)
				return nil
			}
		}
		h.sendPending()
	case *http2.MetaHeadersFrame:
		return h.headers(f)
	case *http2.DataFrame:
		return h.data(f)
	case *http2.RSTStreamFrame:
		h.mu.Lock()
		if st := h.streams[f.StreamID]; st != nil {
			st.done = true
			if st.cancel != nil {
				st.cancel()
			}
			delete(h.streams, f.StreamID)
		}
		h.mu.Unlock()
	case *http2.GoAwayFrame:
		return io.EOF
	case *http2.PushPromiseFrame:
		return fmt.Errorf("%w: a client sent PUSH_PROMISE", errH2Protocol)
	}
	// PRIORITY and unknown frames are ignored (RFC 9113 5.5, 5.3.2).
	return nil
}

func (h *h2Conn) headers(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	h.mu.Lock()
	defer h.mu.Unlock()
	if id%2 == 0 || id <= h.lastID {
		if h.streams[id] != nil {
			h.reset(id, http2.ErrCodeProtocol) // trailers: a DoH request has none
			return nil
		}
		return fmt.Errorf("%w: HEADERS on stream %d after %d", errH2Protocol, id, h.lastID)
	}
	h.lastID = id
	if len(h.streams) >= h2MaxStreams || h.waiting >= h2MaxStreams {
		_ = h.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if f.Truncated {
		h.reset(id, http2.ErrCodeProtocol)
		return nil
	}
	st := &h2Stream{id: id, fields: f.Fields, sendWin: h.initWin, plain: true}
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":method":
			st.method = hf.Value
		case ":path":
			st.path = hf.Value
		case ":authority":
			st.host = hf.Value
		case "content-type":
			st.ctype = hf.Value
		case "accept":
			if strings.Contains(hf.Value, "dns-json") {
				st.plain = false // JSON: the general way
			}
		case "x-forwarded-for", "forwarded", "x-real-ip":
			st.plain = false // a client address to believe or not: the general way
		}
	}
	if st.method == "" || st.path == "" || st.path[0] != '/' {
		h.reset(id, http2.ErrCodeProtocol)
		return nil
	}
	h.streams[id] = st
	if f.StreamEnded() {
		h.request(st)
	}
	return nil
}

func (h *h2Conn) data(f *http2.DataFrame) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f.StreamID == 0 {
		return fmt.Errorf("%w: DATA on stream 0", errH2Protocol)
	}
	// Every DATA byte counts against the connection's window, whatever
	// its stream's state: return it.
	if n := int(f.Header().Length); n > 0 {
		if h.unacked += n; h.unacked >= h2ConnWindow/2 {
			_ = h.fr.WriteWindowUpdate(0, uint32(h.unacked))
			h.unacked = 0
		}
	}
	st := h.streams[f.StreamID]
	if st == nil || st.done {
		if f.StreamID > h.lastID {
			return fmt.Errorf("%w: DATA on idle stream %d", errH2Protocol, f.StreamID)
		}
		return nil // a stream that was reset or answered
	}
	if len(st.body)+len(f.Data()) > h2MaxBody {
		st.tooBig = true
	} else {
		st.body = append(st.body, f.Data()...)
	}
	if f.StreamEnded() {
		h.request(st)
	} else if len(f.Data()) > 0 {
		// The stream's window: a body larger than it is refused anyway.
		_ = h.fr.WriteWindowUpdate(st.id, uint32(len(f.Data())))
	}
	return nil
}

// request answers a stream whose request is whole; with h.mu held.
func (h *h2Conn) request(st *h2Stream) {
	if h.quick(st) {
		return
	}
	w := &h2Response{header: http.Header{}}
	r, token, ok := h.httpRequest(st, w)
	if ok {
		req, c, asJSON, ok := h.s.dohQuery(w, r, token)
		if ok {
			if resp := h.s.resolveNow(req, c); resp != nil {
				dohReply(w, resp, asJSON)
			} else {
				// An upstream must be asked: not on the read loop.
				ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.Timeout.D()+time.Second)
				st.cancel = cancel
				h.waiting++
				go h.answerLater(st, ctx, cancel, req, c, asJSON)
				return
			}
		}
	}
	h.respond(st, w)
}

// quick answers the usual request, a POST of application/dns-message or
// a GET of ?dns=, to /dns-query or /dns-query/<token>, without the
// net/http request the general way makes; false for anything else (and
// for anything wrong with it: the general way then says what).
func (h *h2Conn) quick(st *h2Stream) bool {
	if !st.plain || st.tooBig {
		return false
	}
	path, query, _ := strings.Cut(st.path, "?")
	token := ""
	if path != "/dns-query" {
		rest, ok := strings.CutPrefix(path, "/dns-query/")
		if !ok || !config.ValidDoHToken(rest) || h.s.byToken[rest] == nil {
			return false
		}
		token = rest
	}
	var wire []byte
	switch {
	case st.method == http.MethodPost && query == "" && st.ctype == "application/dns-message":
		wire = st.body
	case st.method == http.MethodGet && strings.HasPrefix(query, "dns=") && !strings.ContainsAny(query[4:], "&=%"):
		var err error
		if wire, err = base64.RawURLEncoding.DecodeString(query[4:]); err != nil {
			return false
		}
	default:
		return false
	}
	req := new(dns.Msg)
	if req.Unpack(wire) != nil || len(req.Question) != 1 {
		return false
	}
	c := caller{via: viaDoH, encrypted: h.st != nil, token: token}
	if ap, err := netip.ParseAddrPort(h.addr); err == nil {
		c.addr = ap.Addr().Unmap()
	}
	resp := h.s.resolveNow(req, c)
	if resp == nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.Timeout.D()+time.Second)
		st.cancel = cancel
		h.waiting++
		go h.answerLater(st, ctx, cancel, req, c, false)
		return true
	}
	out, err := resp.Pack()
	if err != nil {
		return false
	}
	cache := "no-store"
	if ttl, ok := minTTL(resp); ok {
		cache = "max-age=" + strconv.Itoa(int(ttl))
	}
	h.write(st, http.StatusOK, []hpack.HeaderField{{Name: "content-type", Value: "application/dns-message"}, {Name: "cache-control", Value: cache}}, out)
	return true
}

func (h *h2Conn) answerLater(st *h2Stream, ctx context.Context, cancel context.CancelFunc, req *dns.Msg, c caller, asJSON bool) {
	defer cancel()
	resp := h.s.resolve(ctx, req, c)
	w := &h2Response{header: http.Header{}}
	dohReply(w, resp, asJSON)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waiting--
	if h.streams[st.id] != st || st.done {
		return // reset meanwhile
	}
	h.respond(st, w)
	_ = h.flush()
}

// httpRequest makes the net/http request the DoH handling reads, or
// answers 404/405/413 itself.
func (h *h2Conn) httpRequest(st *h2Stream, w *h2Response) (*http.Request, string, bool) {
	u, err := url.ParseRequestURI(st.path)
	if err != nil {
		w.status(http.StatusBadRequest, "path: "+err.Error())
		return nil, "", false
	}
	token, ok := "", u.Path == "/dns-query"
	if rest, found := strings.CutPrefix(u.Path, "/dns-query/"); found && config.ValidDoHToken(rest) {
		token, ok = rest, true
	}
	switch {
	case !ok:
		w.status(http.StatusNotFound, "path: this listener answers only /dns-query")
		return nil, "", false
	case st.method != http.MethodGet && st.method != http.MethodPost:
		w.header.Set("Allow", "GET, POST")
		w.status(http.StatusMethodNotAllowed, "method: want GET or POST")
		return nil, "", false
	case st.tooBig:
		w.status(http.StatusRequestEntityTooLarge, fmt.Sprintf("body: a DNS message is at most %d bytes", h2MaxBody))
		return nil, "", false
	}
	header := http.Header{}
	for _, hf := range st.fields {
		if !strings.HasPrefix(hf.Name, ":") {
			header.Add(hf.Name, hf.Value)
		}
	}
	r := &http.Request{Method: st.method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: header, Host: st.host,
		RemoteAddr: h.addr, RequestURI: st.path, TLS: h.st, ContentLength: int64(len(st.body)), Body: http.NoBody}
	if len(st.body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(st.body))
	}
	return r, token, true
}

// respond writes a response the DoH handling made; with h.mu held.
func (h *h2Conn) respond(st *h2Stream, w *h2Response) {
	code := w.code
	if code == 0 {
		code = http.StatusOK
	}
	var fields []hpack.HeaderField
	for k, vs := range w.header {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			fields = append(fields, hpack.HeaderField{Name: strings.ToLower(k), Value: v})
		}
	}
	h.write(st, code, fields, w.body.Bytes())
}

// write sends a response: HEADERS (and CONTINUATION), then as much DATA
// as the windows allow; with h.mu held.
func (h *h2Conn) write(st *h2Stream, code int, fields []hpack.HeaderField, body []byte) {
	h.encBuf.Reset()
	_ = h.enc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(code)})
	for _, f := range fields {
		_ = h.enc.WriteField(f)
	}
	_ = h.enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(body))})
	block := h.encBuf.Bytes()
	end := len(body) == 0
	first := true
	for len(block) > 0 || first {
		n := min(len(block), h.maxFrame)
		if first {
			_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: block[:n], EndStream: end, EndHeaders: n == len(block)})
			first = false
		} else {
			_ = h.fr.WriteContinuation(st.id, n == len(block), block[:n])
		}
		block = block[n:]
	}
	if end {
		st.done = true
		delete(h.streams, st.id)
		return
	}
	st.pending = body
	h.sendData(st)
}

// sendData writes a stream's pending DATA within the windows; with h.mu
// held.
func (h *h2Conn) sendData(st *h2Stream) {
	for len(st.pending) > 0 {
		n := int64(min(len(st.pending), h.maxFrame))
		n = min(n, st.sendWin, h.sendWin)
		if n <= 0 {
			return // wait for WINDOW_UPDATE
		}
		last := int(n) == len(st.pending)
		_ = h.fr.WriteData(st.id, last, st.pending[:n])
		st.pending = st.pending[n:]
		st.sendWin -= n
		h.sendWin -= n
	}
	st.done = true
	delete(h.streams, st.id)
}

// sendPending resumes streams waiting for window; with h.mu held.
func (h *h2Conn) sendPending() {
	for _, st := range h.streams {
		if len(st.pending) > 0 {
			h.sendData(st)
		}
	}
}

// h2Response collects what the DoH handling writes.
type h2Response struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *h2Response) Header() http.Header { return w.header }
func (w *h2Response) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *h2Response) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.body.Write(b)
}

// status answers an error as the API does (JSON naming the field).
func (w *h2Response) status(code int, msg string) {
	field, _, _ := strings.Cut(msg, ":")
	reply.Error(w, code, field, msg)
}
