// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/websocket"
)

// ErrHTMLOff: HTTP is not served because the HTML server is off (WWW is
// "" and WebSocketOnly is false). Nothing was read from or written to the
// connection: forward it (--tcp-proxy) or refuse it (RefuseHTTP).
var ErrHTMLOff = errors.New("transport: the HTML server is off")

// ErrNoUpgrade: the HTTP connection ended without a websocket upgrade
// (the browser fetched files and went away, or was idle too long).
var ErrNoUpgrade = errors.New("transport: HTTP connection ended without a websocket upgrade")

// HTTPOptions configure ServeHTTP. Zero durations and sizes take the
// defaults below.
type HTTPOptions struct {
	// WWW is the web root holding the HTML5 client (DefaultWWW on
	// Debian); "" means the HTML server is off.
	WWW string
	// LinkRoots are directories outside WWW that symlinks inside it may
	// lead into (DefaultLinkRoots for Debian's package); any other
	// symlink out of WWW is not followed. Missing ones are ignored.
	LinkRoots []string
	// WebSocketOnly serves websocket upgrades only (every other request
	// gets 403), even with WWW "": a ws listener with the HTML server off.
	WebSocketOnly bool

	HeaderTimeout  time.Duration // to read one request's headers; default 10 s
	IdleTimeout    time.Duration // between keep-alive requests; default 30 s
	WriteTimeout   time.Duration // to write one response; default 2 min
	MaxHeaderBytes int           // request line and headers; default 16 KiB

	Log *slog.Logger // default slog.Default()
}

// Header values sent on every response ServeHTTP writes. The policy fits
// Debian's 3.1 HTML5 client: an inline script and onclick handlers,
// style attributes, data: images and sounds, blob: media and workers,
// websocket connections to any server the user names.
const (
	ContentSecurityPolicy = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; " +
		"connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
	ServerName = "xpra-proxy"
)

func securityHeaders(h http.Header) {
	h.Set("Server", ServerName)
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// Revalidate every time (Last-Modified makes that a cheap 304): the
	// client's files change with the package, and stale ones break it.
	h.Set("Cache-Control", "no-cache")
}

// ServeHTTP serves HTTP/1.1 requests on nc (keep-alive, several requests)
// until one upgrades to a websocket: it answers 101 and returns the
// server side of the websocket, which carries the xpra stream, with the
// request's path. Files come from o.WWW: GET and HEAD only, no directory
// listings, index.html for paths ending in '/', a .br or .gz sibling for
// a client that accepts it. A malformed upgrade request gets 400 and the
// connection is closed. Returns ErrHTMLOff at once when HTTP is off,
// ErrNoUpgrade when the connection ends without an upgrade, ctx.Err()
// when ctx ends first (nc is then closed). Wrap nc WithPrefix for peeked
// bytes. The returned connection, a *websocket.Conn (SetMaxFrame bounds
// frame sizes), has no deadlines set.
func ServeHTTP(ctx context.Context, nc net.Conn, o HTTPOptions) (ws net.Conn, path string, err error) {
	if o.WWW == "" && !o.WebSocketOnly {
		return nil, "", ErrHTMLOff
	}
	h := &handler{o: o, log: o.Log, done: make(chan upgraded, 1)}
	if h.log == nil {
		h.log = slog.Default()
	}
	if o.WWW != "" && !o.WebSocketOnly {
		if h.files, err = openFiles(o.WWW, o.LinkRoots); err != nil {
			return nil, "", err
		}
		defer h.files.Close()
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: orDefault(o.HeaderTimeout, 10*time.Second),
		IdleTimeout:       orDefault(o.IdleTimeout, 30*time.Second),
		WriteTimeout:      orDefault(o.WriteTimeout, 2*time.Minute),
		MaxHeaderBytes:    orDefault(o.MaxHeaderBytes, 16<<10),
		Protocols:         protocols,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				h.finish(upgraded{err: ErrNoUpgrade})
			}
		},
	}
	l := newOneConnListener(nc)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	var r upgraded
	select {
	case r = <-h.done:
	case <-ctx.Done():
		// Whichever finishes first wins: an upgrade completed just now
		// is returned rather than leaked.
		h.finish(upgraded{err: ctx.Err()})
		r = <-h.done
	}
	// Close the listener and a connection still served; a hijacked one is
	// no longer the server's and stays open.
	if cerr := srv.Close(); cerr != nil && r.err == nil {
		r.err = fmt.Errorf("transport: closing the HTTP server: %w", cerr)
	}
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && r.err == nil {
		r.err = fmt.Errorf("transport: HTTP: %w", serr)
	}
	if r.err != nil {
		if r.ws != nil {
			r.ws.Close()
		}
		return nil, "", r.err
	}
	return r.ws, r.path, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

type upgraded struct {
	ws   net.Conn
	path string
	err  error
}

type handler struct {
	o     HTTPOptions
	log   *slog.Logger
	files *files // nil: no files are served
	done  chan upgraded
	once  sync.Once
}

// finish reports the connection's outcome once; it returns false if an
// outcome was already reported, and the caller then owns what u holds.
func (h *handler) finish(u upgraded) bool {
	won := false
	h.once.Do(func() { h.done <- u; won = true })
	return won
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	if hasToken(r.Header.Values("Upgrade"), "websocket") {
		h.upgrade(w, r)
		return
	}
	if h.o.WebSocketOnly {
		http.Error(w, "only websocket connections are allowed", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.serveFile(w, r)
}

func (h *handler) serveFile(w http.ResponseWriter, r *http.Request) {
	name, ok := cleanPath(r.URL.Path)
	if !ok || h.files == nil {
		http.Error(w, "404 not found", http.StatusNotFound)
		return
	}
	f, fi, err := h.files.open(name)
	if err != nil && path.Base(name) == "background.png" {
		// The client's stylesheet asks for a desktop background the web
		// root does not have; xpra answers with its transparent 1x1 image
		// rather than a 404, and so do we.
		name = "icons/empty.png"
		f, fi, err = h.files.open(name)
	}
	if err != nil {
		h.log.Debug("http: not served", "remote", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "404 not found", http.StatusNotFound)
		return
	}
	defer func() { f.Close() }()
	hdr := w.Header()
	hdr.Set("Content-Type", contentType(name))
	hdr.Set("Vary", "Accept-Encoding")
	if ae := r.Header.Get("Accept-Encoding"); ae != "" {
		for _, p := range precompressed {
			if !accepts(ae, p.encoding) {
				continue
			}
			if cf, cfi, err := h.files.open(name + p.suffix); err == nil {
				f.Close()
				f, fi = cf, cfi
				hdr.Set("Content-Encoding", p.encoding)
				break
			}
		}
	}
	// connect.html asks "/favicon.png?echo-headers" for the browser's
	// language to preset the keyboard layout, as xpra answers.
	if r.URL.RawQuery == "echo-headers" {
		if lang := sanitizeLanguage(r.Header.Get("Accept-Language")); lang != "" {
			hdr.Set("Echo-Accept-Language", lang)
		}
	}
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// sanitizeLanguage keeps what an Accept-Language value needs, at most
// 100 bytes of it, so echoing it back reflects nothing else.
func sanitizeLanguage(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 100; i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-,.;= *", c) >= 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// hasToken reports whether a comma-separated header has token (any case).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// wsVersions are the handshake versions xpra accepts (HyBi 7, 8, RFC 6455).
var wsVersions = []string{"7", "8", "13"}

// checkUpgrade checks a websocket upgrade request as xpra does (PROTOCOL.md
// §7.4): the Sec-WebSocket-Protocol list, split on commas without
// trimming, must hold exactly "binary".
func checkUpgrade(r *http.Request) error {
	if r.Method != http.MethodGet {
		return fmt.Errorf("websocket upgrade with method %s", r.Method)
	}
	if !r.ProtoAtLeast(1, 1) {
		return errors.New("websocket upgrade before HTTP/1.1")
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); !slices.Contains(wsVersions, v) {
		return fmt.Errorf("unsupported Sec-WebSocket-Version %.20q", v)
	}
	protocols := strings.Split(strings.Join(r.Header.Values("Sec-WebSocket-Protocol"), ","), ",")
	if !slices.Contains(protocols, websocket.Subprotocol) {
		return errors.New("Sec-WebSocket-Protocol does not offer \"binary\"")
	}
	if r.Header.Get("Sec-WebSocket-Key") == "" {
		return errors.New("no Sec-WebSocket-Key")
	}
	return nil
}

// acceptKey is RFC 6455's Sec-WebSocket-Accept for key.
func acceptKey(key string) string {
	s := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(s[:])
}

func (h *handler) upgrade(w http.ResponseWriter, r *http.Request) {
	if err := checkUpgrade(r); err != nil {
		h.log.Debug("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
		w.Header().Set("Connection", "close")
		http.Error(w, "bad websocket upgrade request", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		h.finish(upgraded{err: fmt.Errorf("transport: websocket upgrade: %w", err)})
		return
	}
	// Bytes the client sent right after its request are already buffered.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		early = slices.Clone(b)
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n" +
		"Sec-WebSocket-Protocol: " + websocket.Subprotocol + "\r\nServer: " + ServerName + "\r\n\r\n"
	if _, err := conn.Write([]byte(resp)); err != nil {
		conn.Close()
		h.finish(upgraded{err: fmt.Errorf("transport: websocket upgrade: writing 101: %w", err)})
		return
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		h.finish(upgraded{err: fmt.Errorf("transport: websocket upgrade: %w", err)})
		return
	}
	ws := websocket.NewConn(WithPrefix(conn, early), nil, false)
	if !h.finish(upgraded{ws: ws, path: r.URL.Path}) {
		ws.Close() // ServeHTTP has given up (its context ended)
	}
}

// oneConnListener hands out one connection, then waits to be closed, so
// http.Server serves exactly the connection we own.
type oneConnListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func newOneConnListener(nc net.Conn) *oneConnListener {
	l := &oneConnListener{conns: make(chan net.Conn, 1), closed: make(chan struct{}), addr: nc.LocalAddr()}
	l.conns <- nc
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case nc := <-l.conns:
		return nc, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }

// RefuseHTTP answers an HTTP request that will not be served (the HTML
// server is off and there is no --tcp-proxy) with 400, as xpra does,
// half-closes nc and reads what the client still sends for up to 500 ms
// (xpra's grace), so closing does not reset the connection before the
// client has read the answer. The caller closes nc.
func RefuseHTTP(nc net.Conn) error {
	const body = "this server does not serve HTTP\n"
	h := http.Header{}
	securityHeaders(h)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	h.Set("Connection", "close")
	var b strings.Builder
	b.WriteString("HTTP/1.1 400 Bad Request\r\n")
	if err := h.Write(&b); err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(nc, b.String()); err != nil {
		return fmt.Errorf("transport: refusing HTTP: %w", err)
	}
	if err := CloseWrite(nc); err != nil {
		return fmt.Errorf("transport: refusing HTTP: %w", err)
	}
	if err := nc.SetReadDeadline(time.Now().Add(refuseGrace)); err != nil {
		return fmt.Errorf("transport: refusing HTTP: %w", err)
	}
	// Whatever ends the drain (EOF, the deadline) is of no interest.
	_, _ = io.CopyN(io.Discard, nc, 64<<10)
	return nil
}

const refuseGrace = 500 * time.Millisecond
