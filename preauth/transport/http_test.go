// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/websocket"
)

type served struct {
	ws   net.Conn
	path string
	err  error
}

type httpServer struct {
	addr     string
	results  chan served
	accepted atomic.Int32
}

// startHTTP accepts loopback connections the way the pre-auth process
// will: Peek, TLS if the bytes say so and tlsCfg is set, then ServeHTTP.
// Each connection's outcome arrives on results; websockets returned are
// closed by the test.
func startHTTP(t *testing.T, o HTTPOptions, tlsCfg *tls.Config) *httpServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); l.Close() })
	s := &httpServer{addr: l.Addr().String(), results: make(chan served, 16)}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go func() {
				s.results <- serveOne(ctx, nc, o, tlsCfg)
			}()
		}
	}()
	return s
}

func serveOne(ctx context.Context, nc net.Conn, o HTTPOptions, tlsCfg *tls.Config) served {
	kind, prefix, err := Peek(nc, MaxPeek, PeekTimeout)
	if err != nil {
		nc.Close()
		return served{err: err}
	}
	conn := WithPrefix(nc, prefix)
	if kind == TLS && tlsCfg != nil {
		tc, k, inner, err := WrapTLS(ctx, conn, tlsCfg, SSLAuto)
		if err != nil {
			nc.Close()
			return served{err: err}
		}
		kind, conn = k, WithPrefix(tc, inner)
	}
	if kind != HTTP {
		nc.Close()
		return served{err: fmt.Errorf("not HTTP: %v", kind)}
	}
	ws, path, err := ServeHTTP(ctx, conn, o)
	if err != nil {
		nc.Close()
	}
	return served{ws, path, err}
}

func (s *httpServer) next(t *testing.T) served {
	t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("ServeHTTP did not return")
	}
	return served{}
}

func checkSecurityHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Server":                  "xpra-proxy",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}

// The real HTML5 client of Debian's xpra package, fetched by a real HTTP
// client over one keep-alive connection.
func TestHTTPServesTheHTML5Client(t *testing.T) {
	if _, err := os.Stat(filepath.Join(DefaultWWW, "index.html")); err != nil {
		testenv.Missing(t, "xpra's HTML5 client in "+DefaultWWW)
	}
	s := startHTTP(t, HTTPOptions{WWW: DefaultWWW, LinkRoots: DefaultLinkRoots}, nil)
	tr := &http.Transport{DisableCompression: true, MaxConnsPerHost: 1}
	client := &http.Client{Transport: tr}
	get := func(method, path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+s.addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		checkSecurityHeaders(t, resp.Header)
		return resp, body
	}
	for _, tc := range []struct{ path, file, ctype string }{
		{"/", "index.html", "text/html; charset=utf-8"},
		{"/index.html", "index.html", "text/html; charset=utf-8"},
		{"/connect.html", "connect.html", "text/html; charset=utf-8"},
		{"/js/Client.js", "js/Client.js", "text/javascript; charset=utf-8"},
		{"/js/lib/jquery.js", "js/lib/jquery.js", "text/javascript; charset=utf-8"}, // Debian's symlink into /usr/share/javascript
		{"/css/client.css", "css/client.css", "text/css; charset=utf-8"},
		{"/favicon.ico", "favicon.ico", "image/x-icon"},
		{"/icons/materialicons-regular.woff2", "icons/materialicons-regular.woff2", "font/woff2"},
		// The stylesheet's desktop background: xpra's transparent stand-in.
		{"/background.png", "icons/empty.png", "image/png"},
	} {
		resp, body := get("GET", tc.path)
		want, err := os.ReadFile(filepath.Join(DefaultWWW, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Fatalf("%s: %s, %d bytes, want %d", tc.path, resp.Status, len(body), len(want))
		}
		if ct := resp.Header.Get("Content-Type"); ct != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, ct, tc.ctype)
		}
		if resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("Last-Modified") == "" {
			t.Errorf("%s: caching headers %v", tc.path, resp.Header)
		}
	}
	resp, body := get("HEAD", "/index.html")
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength <= 0 {
		t.Fatalf("HEAD: %s, body %d, length %d", resp.Status, len(body), resp.ContentLength)
	}
	resp, _ = get("GET", "/index.html", "If-Modified-Since", resp.Header.Get("Last-Modified"))
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation: %s", resp.Status)
	}
	resp, _ = get("GET", "/favicon.png?echo-headers", "Accept-Language", "en-GB,en;q=0.8<script>")
	if got := resp.Header.Get("Echo-Accept-Language"); got != "en-GB,en;q=0.8script" {
		t.Fatalf("Echo-Accept-Language %q", got)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections for keep-alive requests", n)
	}
	tr.CloseIdleConnections()
	if r := s.next(t); !errors.Is(r.err, ErrNoUpgrade) {
		t.Fatalf("after the client left: %v", r.err)
	}
}

// testWWW builds a web root with the cases a path must not get out of.
func testWWW(t testing.TB) (www, linkRoot string) {
	t.Helper()
	base := t.TempDir()
	www, linkRoot = filepath.Join(base, "www"), filepath.Join(base, "javascript")
	outside := filepath.Join(base, "secret.txt")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(www, "sub"), 0o755))
	must(os.MkdirAll(linkRoot, 0o755))
	must(os.WriteFile(filepath.Join(www, "index.html"), []byte("<html>index</html>"), 0o644))
	must(os.WriteFile(filepath.Join(www, "app.js"), []byte("var plain = 1;"), 0o644))
	var gz, br bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("var plain = 1;"))
	zw.Close()
	bw := brotli.NewWriter(&br)
	bw.Write([]byte("var plain = 1;"))
	bw.Close()
	must(os.WriteFile(filepath.Join(www, "app.js.gz"), gz.Bytes(), 0o644))
	must(os.WriteFile(filepath.Join(www, "app.js.br"), br.Bytes(), 0o644))
	must(os.WriteFile(filepath.Join(www, "sub", "inner.txt"), []byte("inner"), 0o644))
	must(os.WriteFile(filepath.Join(www, ".hidden"), []byte("hidden"), 0o644))
	must(os.WriteFile(outside, []byte("root:x:0:0 SECRET"), 0o644))
	must(os.WriteFile(filepath.Join(linkRoot, "lib.js"), []byte("var lib = 1;"), 0o644))
	must(os.Symlink("app.js", filepath.Join(www, "link-in")))
	must(os.Symlink(outside, filepath.Join(www, "link-out")))
	must(os.Symlink("../secret.txt", filepath.Join(www, "link-out-relative")))
	must(os.Symlink(base, filepath.Join(www, "dir-out")))
	must(os.Symlink("../../javascript/lib.js", filepath.Join(www, "sub", "lib.js")))
	must(syscall.Mkfifo(filepath.Join(www, "fifo"), 0o644))
	return www, linkRoot
}

// rawConn sends requests by hand, so paths reach the server unchanged.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{c, bufio.NewReader(c)}
}

func (c *rawConn) do(t *testing.T, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("%.60q: %v", req, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func TestHTTPFiles(t *testing.T) {
	www, linkRoot := testWWW(t)
	s := startHTTP(t, HTTPOptions{WWW: www, LinkRoots: []string{linkRoot, "/nonexistent/link/root"}}, nil)
	c := dialRaw(t, s.addr)
	tests := []struct {
		name, method, target string
		hdr                  string // extra header lines
		status               int
		body                 string // "" = not checked
		encoding             string
	}{
		{"index", "GET", "/", "", 200, "<html>index</html>", ""},
		{"file", "GET", "/app.js", "", 200, "var plain = 1;", ""},
		{"traversal", "GET", "/../../etc/passwd", "", 404, "", ""},
		{"traversal to the secret", "GET", "/../secret.txt", "", 404, "", ""},
		{"encoded traversal", "GET", "/%2e%2e/%2e%2e/etc/passwd", "", 404, "", ""},
		{"encoded slashes", "GET", "/..%2f..%2fetc%2fpasswd", "", 404, "", ""},
		{"mixed encoding", "GET", "/sub/%2E./%2e%2E/secret.txt", "", 404, "", ""},
		{"double encoding", "GET", "/%252e%252e/secret.txt", "", 404, "", ""},
		{"traversal below a dir", "GET", "/sub/../../secret.txt", "", 404, "", ""},
		{"double slash", "GET", "//etc/passwd", "", 404, "", ""},
		{"absolute-form", "GET", "http://evil/../../secret.txt", "", 404, "", ""},
		{"backslash", "GET", "/..\\secret.txt", "", 404, "", ""},
		{"NUL", "GET", "/app.js%00.html", "", 404, "", ""},
		{"asterisk", "GET", "*", "", 404, "", ""},
		{"symlink out, absolute", "GET", "/link-out", "", 404, "", ""},
		{"symlink out, relative", "GET", "/link-out-relative", "", 404, "", ""},
		{"through a symlinked dir", "GET", "/dir-out/secret.txt", "", 404, "", ""},
		{"symlink inside", "GET", "/link-in", "", 200, "var plain = 1;", ""},
		{"symlink into a link root", "GET", "/sub/lib.js", "", 200, "var lib = 1;", ""},
		{"hidden file", "GET", "/.hidden", "", 404, "", ""},
		{"hidden file, encoded", "GET", "/%2ehidden", "", 404, "", ""},
		{"fifo", "GET", "/fifo", "", 404, "", ""},
		{"directory", "GET", "/sub", "", 404, "", ""},
		{"directory listing", "GET", "/sub/", "", 404, "", ""},
		{"file in a directory", "GET", "/sub/inner.txt", "", 200, "inner", ""},
		{"missing", "GET", "/nope.js", "", 404, "", ""},
		{"POST", "POST", "/", "Content-Length: 3\r\n", 405, "", ""},
		{"OPTIONS", "OPTIONS", "/", "", 405, "", ""},
		{"gzip sibling", "GET", "/app.js", "Accept-Encoding: gzip, deflate\r\n", 200, "", "gzip"},
		{"brotli preferred", "GET", "/app.js", "Accept-Encoding: gzip, br\r\n", 200, "", "br"},
		{"brotli refused by q=0", "GET", "/app.js", "Accept-Encoding: br;q=0, gzip;q=0.5\r\n", 200, "", "gzip"},
		{"nothing acceptable", "GET", "/app.js", "Accept-Encoding: gzip;q=0, identity\r\n", 200, "var plain = 1;", ""},
		{"no sibling", "GET", "/index.html", "Accept-Encoding: gzip, br\r\n", 200, "<html>index</html>", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.method + " " + tc.target + " HTTP/1.1\r\nHost: x\r\n" + tc.hdr + "\r\n"
			if tc.method == "POST" {
				req += "abc"
			}
			resp, body := c.do(t, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s: %s", tc.method, tc.target, resp.Status)
			}
			if strings.Contains(body, "root:") || strings.Contains(body, "SECRET") {
				t.Fatal("leaked a file outside the web root")
			}
			if tc.body != "" && body != tc.body {
				t.Fatalf("body %q, want %q", body, tc.body)
			}
			if got := resp.Header.Get("Content-Encoding"); got != tc.encoding {
				t.Fatalf("Content-Encoding %q, want %q", got, tc.encoding)
			}
			if tc.status == 200 && strings.HasSuffix(tc.target, ".js") && resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
				t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if tc.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Fatalf("Allow %q", resp.Header.Get("Allow"))
			}
			if tc.encoding != "" {
				checkDecoded(t, tc.encoding, body, "var plain = 1;")
			}
			checkSecurityHeaders(t, resp.Header)
		})
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want all requests on one", n)
	}
}

func checkDecoded(t *testing.T, enc, body, want string) {
	t.Helper()
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(strings.NewReader(body))
	}
	got, err := io.ReadAll(r)
	if err != nil || string(got) != want {
		t.Fatalf("decoded %q, %v", got, err)
	}
}

// Client-side websocket handshakes from gobwas/ws (a browser-like client:
// masked frames) and from our own xpra-style client.
func TestHTTPWebSocket(t *testing.T) {
	www, _ := testWWW(t)
	s := startHTTP(t, HTTPOptions{WWW: www}, nil)

	t.Run("gobwas client", func(t *testing.T) {
		c, _, hs, err := ws.Dialer{Protocols: []string{"binary"}}.Dial(context.Background(), "ws://"+s.addr+"/some/path")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if hs.Protocol != "binary" {
			t.Fatalf("subprotocol %q", hs.Protocol)
		}
		r := s.next(t)
		if r.err != nil || r.path != "/some/path" {
			t.Fatalf("ServeHTTP: %q, %v", r.path, r.err)
		}
		defer r.ws.Close()
		exchange(t, r.ws, c)
		// A ping is answered with a pong; a close ends the stream.
		if err := wsutil.WriteClientMessage(c, ws.OpPing, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		wsutil.WriteClientBinary(c, []byte("x"))
		buf := make([]byte, 8)
		if n, err := r.ws.Read(buf); err != nil || string(buf[:n]) != "x" {
			t.Fatalf("after ping: %q, %v", buf[:n], err)
		}
		h, err := ws.ReadHeader(c)
		if err != nil || h.OpCode != ws.OpPong || h.Length != 2 || h.Masked {
			t.Fatalf("after ping the server sent %+v, %v", h, err)
		}
		pong := make([]byte, 2)
		if _, err := io.ReadFull(c, pong); err != nil || string(pong) != "hi" {
			t.Fatalf("pong %q, %v", pong, err)
		}
		wsutil.WriteClientMessage(c, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		if n, err := r.ws.Read(buf); err != io.EOF {
			t.Fatalf("after close: %d, %v", n, err)
		}
	})

	t.Run("xpra-style client", func(t *testing.T) {
		nc, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := websocket.Dial(ctx, nc, s.addr, "/")
		if err != nil {
			t.Fatal(err)
		}
		r := s.next(t)
		if r.err != nil || r.path != "/" {
			t.Fatalf("ServeHTTP: %q, %v", r.path, r.err)
		}
		defer r.ws.Close()
		if _, err := c.Write([]byte("P\x01\x00\x00\x00\x00\x00\x00")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 8)
		if _, err := io.ReadFull(r.ws, got); err != nil || got[0] != 'P' {
			t.Fatalf("server read %q, %v", got, err)
		}
		r.ws.Write([]byte("back"))
		if _, err := io.ReadFull(c, got[:4]); err != nil || string(got[:4]) != "back" {
			t.Fatalf("client read %q, %v", got[:4], err)
		}
	})

	t.Run("files first, then the upgrade on the same connection, frame in the same write", func(t *testing.T) {
		c := dialRaw(t, s.addr)
		resp, _ := c.do(t, "GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		frame, _ := ws.CompileFrame(ws.MaskFrame(ws.NewBinaryFrame([]byte("early bird"))))
		req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
		io.WriteString(c, req+string(frame))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("%v, %v", resp, err)
		}
		if resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" || resp.Header.Get("Sec-WebSocket-Protocol") != "binary" {
			t.Fatalf("101 headers: %v", resp.Header)
		}
		r := s.next(t)
		if r.err != nil || r.path != "/ws" {
			t.Fatalf("ServeHTTP: %q, %v", r.path, r.err)
		}
		defer r.ws.Close()
		got := make([]byte, 10)
		if _, err := io.ReadFull(r.ws, got); err != nil || string(got) != "early bird" {
			t.Fatalf("read %q, %v", got, err)
		}
	})
}

// exchange sends data both ways through a server websocket and a gobwas client.
func exchange(t *testing.T, server net.Conn, client net.Conn) {
	t.Helper()
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000)
	go server.Write(big)
	got, err := wsutil.ReadServerBinary(client)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("client read %d bytes, %v", len(got), err)
	}
	if err := wsutil.WriteClientBinary(client, []byte("from the browser")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "from the browser" {
		t.Fatalf("server read %q, %v", buf, err)
	}
}

func TestHTTPUpgradeChecks(t *testing.T) {
	www, _ := testWWW(t)
	s := startHTTP(t, HTTPOptions{WWW: www}, nil)
	const key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	tests := []struct {
		name   string
		method string
		hdr    string
		status int
	}{
		{"RFC 6455", "GET", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n" + key, 101},
		{"HyBi 7", "GET", "Sec-WebSocket-Version: 7\r\nSec-WebSocket-Protocol: binary\r\n" + key, 101},
		{"HyBi 8", "GET", "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: binary\r\n" + key, 101},
		{"binary first of two", "GET", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary, base64\r\n" + key, 101},
		{"binary on a second header line", "GET", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: base64\r\nSec-WebSocket-Protocol: binary\r\n" + key, 101},
		{"binary after a space is not binary", "GET", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: base64, binary\r\n" + key, 400},
		{"no subprotocol", "GET", "Sec-WebSocket-Version: 13\r\n" + key, 400},
		{"version 12", "GET", "Sec-WebSocket-Version: 12\r\nSec-WebSocket-Protocol: binary\r\n" + key, 400},
		{"no version", "GET", "Sec-WebSocket-Protocol: binary\r\n" + key, 400},
		{"no key", "GET", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n", 400},
		{"POST upgrade", "POST", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\nContent-Length: 0\r\n" + key, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, s.addr)
			// A GET first, so the connection is sniffed as HTTP whatever follows.
			c.do(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := func() (*http.Response, error) {
				io.WriteString(c, tc.method+" / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+tc.hdr+"\r\n")
				return http.ReadResponse(c.br, nil)
			}()
			if err != nil || resp.StatusCode != tc.status {
				t.Fatalf("%v, %v; want %d", resp, err, tc.status)
			}
			r := s.next(t)
			if tc.status == 101 {
				if r.err != nil {
					t.Fatal(r.err)
				}
				r.ws.Close()
				return
			}
			checkSecurityHeaders(t, resp.Header)
			io.ReadAll(resp.Body)
			if !errors.Is(r.err, ErrNoUpgrade) {
				t.Fatalf("ServeHTTP: %v", r.err)
			}
			// The server closed the connection after its 400.
			if _, err := c.br.ReadByte(); err != io.EOF {
				t.Fatalf("connection still open: %v", err)
			}
		})
	}
}

func TestHTTPModes(t *testing.T) {
	t.Run("html off", func(t *testing.T) {
		c, srv := pair(t)
		go io.WriteString(c, "GET / HTTP/1.1\r\n\r\n")
		kind, prefix, err := Peek(srv, 0, time.Second)
		if err != nil || kind != HTTP {
			t.Fatal(kind, err)
		}
		if _, _, err := ServeHTTP(context.Background(), WithPrefix(srv, prefix), HTTPOptions{}); !errors.Is(err, ErrHTMLOff) {
			t.Fatalf("err = %v", err)
		}
		// Nothing was written: the caller may still forward the connection.
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("client got %d bytes, %v", n, err)
		}
		// RefuseHTTP answers as xpra does.
		go func() { RefuseHTTP(srv); srv.Close() }()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 400 {
			t.Fatalf("%v, %v", resp, err)
		}
		checkSecurityHeaders(t, resp.Header)
	})
	t.Run("websocket only", func(t *testing.T) {
		s := startHTTP(t, HTTPOptions{WebSocketOnly: true}, nil)
		c := dialRaw(t, s.addr)
		resp, _ := c.do(t, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 403 {
			t.Fatal(resp.Status)
		}
		checkSecurityHeaders(t, resp.Header)
		conn, _, _, err := ws.Dialer{Protocols: []string{"binary"}}.Dial(context.Background(), "ws://"+s.addr+"/")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c.Close()
		for range 2 {
			if r := s.next(t); r.ws != nil {
				exchange(t, r.ws, conn)
				r.ws.Close()
			} else if !errors.Is(r.err, ErrNoUpgrade) {
				t.Fatal(r.err)
			}
		}
	})
}

func TestHTTPLimits(t *testing.T) {
	www, _ := testWWW(t)
	o := HTTPOptions{WWW: www, HeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, MaxHeaderBytes: 1024}
	s := startHTTP(t, o, nil)
	t.Run("headers too large", func(t *testing.T) {
		c := dialRaw(t, s.addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 8192)+"\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%v, %v", resp, err)
		}
		if r := s.next(t); !errors.Is(r.err, ErrNoUpgrade) {
			t.Fatal(r.err)
		}
	})
	t.Run("headers too slow", func(t *testing.T) {
		c := dialRaw(t, s.addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		if r := s.next(t); !errors.Is(r.err, ErrNoUpgrade) {
			t.Fatal(r.err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("slow headers kept for %v", d)
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dialRaw(t, s.addr)
		c.do(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if r := s.next(t); !errors.Is(r.err, ErrNoUpgrade) {
			t.Fatal(r.err)
		}
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("idle connection not closed: %v", err)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		c, srv := pair(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { _, _, err := ServeHTTP(ctx, srv, HTTPOptions{WWW: www}); done <- err }()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		http.ReadResponse(bufio.NewReader(c), nil)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("ServeHTTP ignored its context")
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("connection not closed: %v", err)
		}
	})
	t.Run("web root missing", func(t *testing.T) {
		_, srv := pair(t)
		if _, _, err := ServeHTTP(context.Background(), srv, HTTPOptions{WWW: "/nonexistent/www"}); err == nil {
			t.Fatal("served a missing web root")
		}
	})
}

// HTTPS and WSS through Peek, WrapTLS and ServeHTTP with real clients.
func TestHTTPSAndWSS(t *testing.T) {
	p := newPKI(t)
	cfg, err := ServerTLS(TLSOptions{Cert: p.certFile, Key: p.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	www, _ := testWWW(t)
	s := startHTTP(t, HTTPOptions{WWW: www}, cfg)
	clientTLS := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"}
	tr := &http.Transport{TLSClientConfig: clientTLS, DisableCompression: true}
	resp, err := (&http.Client{Transport: tr}).Get("https://" + s.addr + "/app.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "var plain = 1;" || resp.TLS == nil {
		t.Fatalf("%s %q", resp.Status, body)
	}
	checkSecurityHeaders(t, resp.Header)
	tr.CloseIdleConnections()
	if r := s.next(t); !errors.Is(r.err, ErrNoUpgrade) {
		t.Fatal(r.err)
	}

	for _, alpn := range [][]string{nil, {"http/1.1"}} {
		c, _, _, err := ws.Dialer{Protocols: []string{"binary"}, TLSConfig: &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", NextProtos: alpn}}.
			Dial(context.Background(), "wss://"+s.addr+"/wss")
		if err != nil {
			t.Fatal(err)
		}
		r := s.next(t)
		if r.err != nil || r.path != "/wss" {
			t.Fatalf("ALPN %v: %q, %v", alpn, r.path, r.err)
		}
		exchange(t, r.ws, c)
		r.ws.Close()
		c.Close()
	}
}

// socketPair returns two connected unix stream sockets (with CloseWrite).
func socketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// FuzzServeHTTP feeds arbitrary bytes to ServeHTTP as what a client sent
// after its connection was sniffed as HTTP: it must answer or close, and
// return, whatever the bytes.
func FuzzServeHTTP(f *testing.F) {
	www, linkRoot := testWWW(f)
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /app.js HTTP/1.1\r\nAccept-Encoding: br;q=0.5, gzip\r\n\r\nGET /sub/lib.js HTTP/1.1\r\n\r\n",
		"GET /../secret.txt HTTP/1.1\r\n\r\n",
		"HEAD /favicon.png?echo-headers HTTP/1.1\r\nAccept-Language: en\r\n\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\nSec-WebSocket-Key: a\r\n\r\n\x82\x00",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
		"GET / HTTP/1.1\r\nRange: bytes=2-5\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	// What the real HTML5 client sent: its page and script requests (f0)
	// and its WebSocket upgrade with the first frames (f1).
	for _, b := range shared.TraceSeeds(f, "f0-http-get-index-via-proxy.c2s.bin", "f1-html5-ws-via-proxy.client-proxy.c2s.bin") {
		f.Add(b[:min(len(b), 4096)])
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, 4<<20, func() {
			c, srv := socketPair(t)
			defer c.Close()
			go func() {
				c.Write(in)
				c.(*net.UnixConn).CloseWrite()
			}()
			drained := make(chan int64, 1)
			go func() { n, _ := io.Copy(io.Discard, c); drained <- n }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ws, _, err := ServeHTTP(ctx, srv, HTTPOptions{WWW: www, LinkRoots: []string{linkRoot}})
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("ServeHTTP hung")
			}
			if ws != nil {
				io.Copy(io.Discard, ws)
				ws.Close()
			}
			srv.Close()
			<-drained
		})
	})
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b/", "/../x", "/a/./b", "//x", "/.h", "/a\\b", "/a/..", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, ok := cleanPath(p)
		if !ok {
			return
		}
		if name == "" || strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\x00\\") {
			t.Fatalf("%q -> %q", p, name)
		}
		for _, seg := range strings.Split(name, "/") {
			if seg == "" || strings.HasPrefix(seg, ".") {
				t.Fatalf("%q -> %q has segment %q", p, name, seg)
			}
		}
	})
}
