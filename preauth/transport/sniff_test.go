// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/shared"
)

// trace returns the first n bytes a real client sent in a capture.
func trace(t testing.TB, name string, n int) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shared.Traces(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b[:min(n, len(b))]
}

// clientHello returns the first record a real crypto/tls client sends.
func clientHello(t testing.TB, alpn ...string) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		tc := tls.Client(c, &tls.Config{ServerName: "proxy.example", NextProtos: alpn, InsecureSkipVerify: true})
		tc.Handshake() // fails when we close: we only want its first bytes
		c.Close()
	}()
	buf := make([]byte, 4096)
	n, err := s.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestSniff(t *testing.T) {
	long := "GET /" + strings.Repeat("a", MaxPeek)
	tests := []struct {
		name string
		in   []byte
		want Kind
	}{
		{"xpra version hello (a1)", trace(t, "a1-version-direct.1.c2s.bin", 64), Xpra},
		{"xpra attach hello (d)", trace(t, "d-attach-direct.1.c2s.bin", 8), Xpra},
		{"xpra header only", []byte("P\x01\x01\x00\x00\x00\x04\xb0"), Xpra},
		{"two bytes of xpra", []byte("P\x01"), Xpra},
		{"browser GET (f0)", trace(t, "f0-http-get-index-via-proxy.c2s.bin", 512), HTTP},
		{"html5 websocket upgrade (f1)", trace(t, "f1-html5-ws-via-proxy.client-proxy.c2s.bin", 512), HTTP},
		{"TLS ClientHello", clientHello(t), TLS},
		{"TLS ClientHello with ALPN", clientHello(t, "h2", "http/1.1"), TLS},
		{"GET line", []byte("GET / HTTP/1.1\r\n"), HTTP},
		{"GET line, LF only", []byte("GET /index.html HTTP/1.0\n"), HTTP},
		{"POST", []byte("POST /x HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP},
		{"POST without HTTP/", []byte("POST /x\r\n"), Other},
		{"PUT is xpra, as xpra says", []byte("PUT / HTTP/1.1\r\n"), Xpra},
		{"SSH banner", []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), SSH},
		{"RFB", []byte("RFB 003.008\n"), Other},
		{"line without HTTP/", []byte("hello world\r\n"), Other},
		{"HTTP/ at the start", []byte("HTTP/1.1 200 OK\r\n"), Other},
		{"NUL", []byte{0}, Other},
		{"binary garbage", []byte{0x80, 0x01, 0x02}, Other},
		{"control char in the line", []byte("GET /\x01 HTTP/1.1\r\n"), Other},
		{"space first", []byte(" GET / HTTP/1.1\r\n"), Other},
		{"empty line first", []byte("\r\nGET / HTTP/1.1\r\n"), Other},
		{"line too long", []byte(long), Other},
		{"nothing yet", nil, NeedMore},
		{"P", []byte("P"), NeedMore},
		{"POS", []byte("POS"), NeedMore},
		{"POST", []byte("POST"), NeedMore},
		{"S", []byte("S"), NeedMore},
		{"SSH", []byte("SSH"), NeedMore},
		{"incomplete request line", []byte("GET / HTTP/1.1"), NeedMore},
		{"incomplete method", []byte("OPTIO"), NeedMore},
		{"PROXY v1", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 5000 14500\r\nP\x01"), ProxyHeader},
		{"PROXY v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), ProxyHeader},
		{"PROXY v1 signature only", []byte("PROXY "), ProxyHeader},
		{"PROXY v1 incomplete", []byte("PROXY"), NeedMore},
		{"PRO is still undecided", []byte("PRO"), NeedMore},
		{"PROXZ is xpra", []byte("PROXZ"), Xpra},
		{"PROXY v2", []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"), ProxyHeader},
		{"PROXY v2 incomplete", []byte("\r\n\r\n\x00\r\nQUIT"), NeedMore},
		{"PROXY v2 signature broken", []byte("\r\n\r\n\x01"), Other},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sniff(tc.in); got != tc.want {
				t.Fatalf("Sniff(%.40q) = %v, want %v", tc.in, got, tc.want)
			}
			checkPrefixes(t, tc.in)
		})
	}
}

// checkPrefixes: once a prefix is decided, every longer one says the same.
func checkPrefixes(t *testing.T, in []byte) {
	t.Helper()
	final := Sniff(in)
	decided := false
	for i := 0; i <= len(in); i++ {
		k := Sniff(in[:i])
		if k == NeedMore {
			if decided {
				t.Fatalf("prefix of %d bytes undecided after a shorter one decided", i)
			}
			continue
		}
		decided = true
		if k != final {
			t.Fatalf("prefix of %d bytes says %v, the whole %v", i, k, final)
		}
	}
	if final == NeedMore && len(in) >= MaxPeek {
		t.Fatalf("%d bytes still undecided", len(in))
	}
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\n"))
	f.Add([]byte("P\x01\x01\x00\x00\x00\x04\xb0"))
	f.Add([]byte("SSH-2.0-x\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01})
	f.Add([]byte("hello"))
	f.Add([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 5000 14500\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"))
	// The first bytes real clients sent: xpra 3.1.3, HTTP, WebSocket.
	for _, b := range shared.TraceSeeds(f, "a1-version-direct.1.c2s.bin", "f0-http-get-index-via-proxy.c2s.bin", "f1-html5-ws-via-proxy.client-proxy.c2s.bin") {
		f.Add(b[:min(len(b), 2048)])
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// Every prefix is checked, so keep inputs short; the table covers
		// the MaxPeek limit.
		in = in[:min(len(in), 2048)]
		fuzzcheck.Bounded(t, 4096, func() { checkPrefixes(t, in) })
	})
}

// pair returns both ends of a real loopback TCP connection.
func pair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestPeek(t *testing.T) {
	tests := []struct {
		name    string
		send    []string // written one at a time, 5 ms apart
		close   bool     // then close
		max     int
		want    Kind
		wantErr error
	}{
		{"http byte by byte", strings.Split("GET / HTTP/1.1\r\n", ""), false, 0, HTTP, nil},
		{"xpra", []string{"P\x01\x01\x00"}, false, 0, Xpra, nil},
		{"tls", []string{"\x16\x03\x01"}, false, 0, TLS, nil},
		{"POST in pieces", []string{"PO", "ST /", " HTTP/1.1\r\n"}, false, 0, HTTP, nil},
		{"silent peer", nil, false, 0, NeedMore, nil},
		{"stalls undecided", []string{"PO"}, false, 0, NeedMore, nil},
		{"closes undecided", []string{"S"}, true, 0, NeedMore, io.EOF},
		{"closes at once", nil, true, 0, NeedMore, io.EOF},
		{"max reached", []string{"GET /aaaaaaaaaaaaaaaaaaaaaaaaa"}, false, 16, Other, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t)
			go func() {
				for _, p := range tc.send {
					c.Write([]byte(p))
					time.Sleep(5 * time.Millisecond)
				}
				if tc.close {
					c.Close()
				}
			}()
			// Long enough for the senders on a loaded machine; the cases
			// that end undecided wait it out.
			timeout := 2 * time.Second
			if len(tc.send) <= 1 && !tc.close {
				timeout = 300 * time.Millisecond
			}
			kind, prefix, err := Peek(s, tc.max, timeout)
			if kind != tc.want || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Peek = %v, %q, %v; want %v, %v", kind, prefix, err, tc.want, tc.wantErr)
			}
			if max := tc.max; max > 0 && len(prefix) > max {
				t.Fatalf("read %d bytes, max %d", len(prefix), max)
			}
			// The deadline is gone: a later read waits for data, not the clock.
			if tc.close || timeout > time.Second {
				return
			}
			time.Sleep(timeout + 50*time.Millisecond)
			c.Write([]byte("x"))
			one := make([]byte, 64)
			if n, err := s.Read(one); err != nil || n == 0 {
				t.Fatalf("read after Peek: %v", err)
			}
		})
	}
}

// TestPeekFrom: a client slow to say its first bytes is waited for until
// first, then the usual peek time applies to the rest; silence still
// ends undecided, at first.
func TestPeekFrom(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration // before the client speaks
		send  []string      // written one at a time, 5 ms apart (none: silent)
		want  Kind
	}{
		{"slow TLS client", 600 * time.Millisecond, []string{"\x16\x03\x01"}, TLS},
		{"slow HTTP client", 600 * time.Millisecond, strings.Split("GET / HTTP/1.1\r\n", ""), HTTP},
		{"slow, then stalls undecided", 600 * time.Millisecond, []string{"PO"}, NeedMore},
		{"silent", 0, nil, NeedMore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t)
			go func() {
				time.Sleep(tc.delay)
				for _, p := range tc.send {
					c.Write([]byte(p))
					time.Sleep(5 * time.Millisecond)
				}
			}()
			// The usual peek time (200 ms) is shorter than the client's
			// delay: Peek alone would give up on it.
			start := time.Now()
			first := start.Add(3 * time.Second)
			kind, prefix, err := PeekFrom(s, 0, first, 200*time.Millisecond)
			took := time.Since(start)
			if kind != tc.want || err != nil {
				t.Fatalf("PeekFrom = %v, %q, %v after %s; want %v", kind, prefix, err, took, tc.want)
			}
			if tc.send == nil && took < 3*time.Second {
				t.Fatalf("a silent peer was given up after %s, before first", took)
			}
			if tc.want == NeedMore && tc.send != nil && took > 2*time.Second {
				t.Fatalf("the rest of the peek took %s: the usual time did not apply once the client spoke", took)
			}
		})
	}
}

func TestWithPrefix(t *testing.T) {
	c, s := pair(t)
	go func() { c.Write([]byte("rest")); c.Close() }()
	got, err := io.ReadAll(WithPrefix(s, []byte("prefix-")))
	if err != nil || string(got) != "prefix-rest" {
		t.Fatalf("got %q, %v", got, err)
	}
	if WithPrefix(s, nil) != s {
		t.Fatal("an empty prefix should not wrap")
	}
	// Half-close passes through to the TCP connection.
	c2, s2 := pair(t)
	if err := WithPrefix(s2, []byte("x")).(closeWriter).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := c2.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after CloseWrite the peer reads %d, %v", n, err)
	}
}
