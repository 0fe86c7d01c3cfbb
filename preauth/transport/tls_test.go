// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/websocket"
)

func TestServerTLSOptions(t *testing.T) {
	p := newPKI(t)
	keyPEM, err := os.ReadFile(p.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	combined := p.write(t, "combined.pem", append(append([]byte{}, p.serverCertPEM...), keyPEM...))
	sec1, err := x509.MarshalECPrivateKey(p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	//nolint:staticcheck // making the legacy encrypted PEM that some admins still have
	encBlock, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", sec1, []byte("s3cret"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	legacyEnc := p.write(t, "legacy-enc.pem", pem.EncodeToMemory(encBlock))
	_, _, otherKey := makeLeaf(t, p.serverKey, mustParse(t, p.serverCertPEM), false)
	wrongKey := p.write(t, "wrong-key.pem", otherKey)
	caDir := filepath.Join(p.dir, "cas")
	os.Mkdir(caDir, 0o700)
	os.WriteFile(filepath.Join(caDir, "a.pem"), mustRead(t, p.caFile), 0o600)
	os.WriteFile(filepath.Join(caDir, "README"), []byte("not a cert"), 0o600)
	emptyDir := t.TempDir()

	base := TLSOptions{Cert: p.certFile, Key: p.keyFile}
	with := func(f func(o *TLSOptions)) TLSOptions { o := base; f(&o); return o }
	tests := []struct {
		name    string
		o       TLSOptions
		wantErr string // "" = success
		check   func(t *testing.T, c *tls.Config)
	}{
		{"cert and key", base, "", func(t *testing.T, c *tls.Config) {
			if c.MinVersion != tls.VersionTLS12 || c.CipherSuites != nil || c.ClientAuth != tls.NoClientCert {
				t.Fatalf("defaults: min %x, suites %v, client auth %v", c.MinVersion, c.CipherSuites, c.ClientAuth)
			}
		}},
		{"key inside the cert file", TLSOptions{Cert: combined}, "", nil},
		{"no key anywhere", TLSOptions{Cert: p.certFile}, "no PEM private key", nil},
		{"no cert", TLSOptions{}, "ssl-cert is required", nil},
		{"missing cert file", with(func(o *TLSOptions) { o.Cert = "/nonexistent.pem" }), "no such file", nil},
		{"key file holds no cert", TLSOptions{Cert: p.keyFile}, "no PEM certificate", nil},
		{"key of another certificate", with(func(o *TLSOptions) { o.Key = wrongKey }), "private key does not match", nil},
		{"legacy encrypted key", with(func(o *TLSOptions) { o.Key, o.KeyPassword = legacyEnc, "s3cret" }), "", nil},
		{"legacy encrypted key, no password", with(func(o *TLSOptions) { o.Key = legacyEnc }), "set ssl-key-password", nil},
		{"legacy encrypted key, wrong password", with(func(o *TLSOptions) { o.Key, o.KeyPassword = legacyEnc, "nope" }), "decrypting", nil},
		{"protocol TLS", with(func(o *TLSOptions) { o.Protocol = "TLS" }), "", nil},
		{"protocol SSLv23 (xpra's old default)", with(func(o *TLSOptions) { o.Protocol = "SSLv23" }), "", nil},
		{"protocol TLSv1_3", with(func(o *TLSOptions) { o.Protocol = "TLSv1_3" }), "", func(t *testing.T, c *tls.Config) {
			if c.MinVersion != tls.VersionTLS13 {
				t.Fatalf("min version %x", c.MinVersion)
			}
		}},
		{"protocol TLSv1", with(func(o *TLSOptions) { o.Protocol = "TLSv1" }), "insecure", nil},
		{"protocol SSLv3", with(func(o *TLSOptions) { o.Protocol = "SSLv3" }), "ssl-protocol", nil},
		{"ciphers DEFAULT", with(func(o *TLSOptions) { o.Ciphers = "DEFAULT" }), "", nil},
		{"ciphers by both spellings", with(func(o *TLSOptions) {
			o.Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
		}), "", func(t *testing.T, c *tls.Config) {
			want := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
			if len(c.CipherSuites) != 2 || c.CipherSuites[0] != want[0] || c.CipherSuites[1] != want[1] {
				t.Fatalf("suites %x", c.CipherSuites)
			}
		}},
		{"cipher unknown", with(func(o *TLSOptions) { o.Ciphers = "HIGH:!aNULL" }), "unknown suite", nil},
		{"cipher insecure", with(func(o *TLSOptions) { o.Ciphers = "TLS_RSA_WITH_RC4_128_SHA" }), "insecure", nil},
		{"TLS 1.3 suites with TLS 1.2 allowed", with(func(o *TLSOptions) { o.Ciphers = "TLS_AES_128_GCM_SHA256" }), "TLSv1_3", nil},
		{"TLS 1.3 suites with TLS 1.3 only", with(func(o *TLSOptions) { o.Ciphers, o.Protocol = "TLS_AES_128_GCM_SHA256", "TLSv1_3" }), "", nil},
		{"verify mode bogus", with(func(o *TLSOptions) { o.ClientVerifyMode = "maybe" }), "ssl-client-verify-mode", nil},
		{"verify required, CA file", with(func(o *TLSOptions) { o.ClientVerifyMode, o.CACerts = "required", p.caFile }), "", func(t *testing.T, c *tls.Config) {
			if c.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientCAs == nil {
				t.Fatal("client certificates not required")
			}
		}},
		{"verify optional, CA dir", with(func(o *TLSOptions) { o.ClientVerifyMode, o.CACerts = "optional", caDir }), "", nil},
		{"verify optional, system CAs", with(func(o *TLSOptions) { o.ClientVerifyMode, o.CACerts = "optional", "default" }), "", nil},
		{"CA dir without certs", with(func(o *TLSOptions) { o.ClientVerifyMode, o.CACerts = "required", emptyDir }), "no PEM certificate", nil},
		{"CA file missing", with(func(o *TLSOptions) { o.ClientVerifyMode, o.CACerts = "required", "/nonexistent" }), "no such file", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ServerTLS(tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}

// A PKCS#8-encrypted key as openssl writes it is refused with advice.
func TestServerTLSPKCS8Encrypted(t *testing.T) {
	openssl := testenv.Command(t, "openssl")
	p := newPKI(t)
	enc := filepath.Join(p.dir, "pkcs8-enc.pem")
	out, err := exec.Command(openssl, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", p.keyFile, "-out", enc, "-passout", "pass:s3cret").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	_, err = ServerTLS(TLSOptions{Cert: p.certFile, Key: enc, KeyPassword: "s3cret"})
	if err == nil || !strings.Contains(err.Error(), "PKCS#8-encrypted") {
		t.Fatalf("err = %v", err)
	}
}

func mustRead(t testing.TB, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type tlsResult struct {
	peeked Kind // what Peek said of the raw bytes
	kind   Kind
	data   []byte // the first bytes of the decrypted stream, prefix replayed
	state  tls.ConnectionState
	err    error
}

// serveTLS accepts one connection on loopback the way the pre-auth
// process will: Peek, WrapTLS over the replayed bytes, then read want
// bytes of what the client sent inside TLS.
func serveTLS(t *testing.T, cfg *tls.Config, mode SSLMode, want int) (string, <-chan tlsResult) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan tlsResult, 1)
	go func() {
		defer l.Close()
		nc, err := l.Accept()
		if err != nil {
			res <- tlsResult{err: err}
			return
		}
		defer nc.Close()
		var r tlsResult
		var prefix []byte
		r.peeked, prefix, r.err = Peek(nc, MaxPeek, PeekTimeout)
		if r.err != nil {
			res <- r
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		tc, kind, inner, err := WrapTLS(ctx, WithPrefix(nc, prefix), cfg, mode)
		r.kind, r.err = kind, err
		if err == nil {
			r.state = tc.ConnectionState()
			r.data = make([]byte, want)
			_, r.err = io.ReadFull(WithPrefix(tc, inner), r.data)
		}
		res <- r
	}()
	return l.Addr().String(), res
}

func TestWrapTLS(t *testing.T) {
	p := newPKI(t)
	hello := trace(t, "a1-version-direct.1.c2s.bin", 1<<20)
	get := []byte("GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	cfgFor := func(f func(o *TLSOptions)) *tls.Config {
		o := TLSOptions{Cert: p.certFile, Key: p.keyFile}
		if f != nil {
			f(&o)
		}
		cfg, err := ServerTLS(o)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	plain := cfgFor(nil)
	required := cfgFor(func(o *TLSOptions) { o.ClientVerifyMode, o.CACerts = "required", p.caFile })
	requiredOther := cfgFor(func(o *TLSOptions) { o.ClientVerifyMode, o.CACerts = "required", p.otherCA })
	optional := cfgFor(func(o *TLSOptions) { o.ClientVerifyMode, o.CACerts = "optional", p.caFile })
	tls13 := cfgFor(func(o *TLSOptions) { o.Protocol = "TLSv1_3" })

	client := func(f func(c *tls.Config)) *tls.Config {
		c := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"}
		if f != nil {
			f(c)
		}
		return c
	}
	tests := []struct {
		name    string
		server  *tls.Config
		mode    SSLMode
		client  *tls.Config
		send    []byte
		want    Kind
		wantErr bool
	}{
		{"browser: ALPN http/1.1", plain, SSLAuto, client(func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} }), get, HTTP, false},
		{"xpra client: hello inside", plain, SSLAuto, client(nil), hello, Xpra, false},
		{"HTTP without ALPN", plain, SSLAuto, client(nil), get, HTTP, false},
		{"client offering only its own ALPN", plain, SSLAuto, client(func(c *tls.Config) { c.NextProtos = []string{"xpra"} }), hello, Xpra, false},
		{"mode www", plain, SSLWWW, client(nil), hello, HTTP, false},
		{"mode tcp", plain, SSLTCP, client(func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }), get, Xpra, false},
		{"TLS 1.2 client", plain, SSLAuto, client(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }), hello, Xpra, false},
		{"TLS 1.1 client refused", plain, SSLAuto, client(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }), hello, NeedMore, true},
		{"TLS 1.2 client, server 1.3 only", tls13, SSLAuto, client(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }), hello, NeedMore, true},
		{"client cert required, none sent", required, SSLAuto, client(nil), hello, NeedMore, true},
		{"client cert required and sent", required, SSLAuto, client(func(c *tls.Config) { c.Certificates = []tls.Certificate{p.clientCert} }), hello, Xpra, false},
		{"client cert from another CA", requiredOther, SSLAuto, client(func(c *tls.Config) { c.Certificates = []tls.Certificate{p.clientCert} }), hello, NeedMore, true},
		{"client cert optional, none sent", optional, SSLAuto, client(nil), hello, Xpra, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, res := serveTLS(t, tc.server, tc.mode, len(tc.send))
			d := &tls.Dialer{Config: tc.client}
			c, err := d.Dial("tcp", addr)
			if err == nil {
				defer c.Close()
				c.Write(tc.send)
			}
			r := <-res
			if r.peeked != TLS {
				t.Fatalf("raw bytes peeked as %v", r.peeked)
			}
			if tc.wantErr {
				if r.err == nil {
					t.Fatalf("accepted (kind %v)", r.kind)
				}
				return
			}
			if r.err != nil || r.kind != tc.want {
				t.Fatalf("kind %v, err %v; want %v", r.kind, r.err, tc.want)
			}
			if string(r.data) != string(tc.send) {
				t.Fatalf("decrypted stream starts %.30q, want %.30q", r.data, tc.send)
			}
			if tc.client.Certificates != nil && (len(r.state.PeerCertificates) == 0 || r.state.PeerCertificates[0].Subject.CommonName != "alice") {
				t.Fatal("client certificate not seen")
			}
		})
	}
}

func TestWrapTLSTimeouts(t *testing.T) {
	p := newPKI(t)
	cfg, err := ServerTLS(TLSOptions{Cert: p.certFile, Key: p.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("handshake bounded by ctx", func(t *testing.T) {
		c, s := pair(t)
		c.Write(clientHello(t)[:20]) // a truncated ClientHello, then silence
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, _, _, err := WrapTLS(ctx, s, cfg, SSLAuto); err == nil {
			t.Fatal("handshake succeeded")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("silent client after the handshake", func(t *testing.T) {
		// Undecided after PeekTimeout, and the stream still works after it.
		addr, res := serveTLS(t, cfg, SSLAuto, 5)
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(PeekTimeout + 300*time.Millisecond)
		c.Write([]byte("late!"))
		if r := <-res; r.err != nil || r.kind != NeedMore || string(r.data) != "late!" {
			t.Fatalf("kind %v, data %q, err %v", r.kind, r.data, r.err)
		}
	})
	t.Run("ssl off", func(t *testing.T) {
		_, s := pair(t)
		if _, _, _, err := WrapTLS(context.Background(), s, cfg, SSLOff); err == nil {
			t.Fatal("accepted")
		}
	})
}

func TestParseSSLMode(t *testing.T) {
	for in, want := range map[string]SSLMode{"auto": SSLAuto, "on": SSLAuto, "yes": SSLAuto, "TRUE": SSLAuto,
		"www": SSLWWW, "tcp": SSLTCP, "off": SSLOff, "no": SSLOff} {
		if got, err := ParseSSLMode(in); err != nil || got != want {
			t.Errorf("%q: %v, %v", in, got, err)
		}
	}
	if _, err := ParseSSLMode("sometimes"); err == nil {
		t.Error("bogus mode accepted")
	}
}

// recorder keeps every byte read from the wrapped connection.
type recorder struct {
	net.Conn
	got []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.got = append(r.got, p[:n]...)
	return n, err
}

// lastRecordType walks TLS records and returns the content type of the last.
func lastRecordType(t *testing.T, b []byte) byte {
	t.Helper()
	var typ byte
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("%d bytes of a record header at the end", len(b))
		}
		n := 5 + (int(b[3])<<8 | int(b[4]))
		if len(b) < n {
			t.Fatalf("record of %d bytes, %d left", n, len(b))
		}
		typ, b = b[0], b[n:]
	}
	return typ
}

// TestHangup: the client reads the answer, then each layer's end (a
// close frame, a close_notify, the FIN); what it sends after that is
// drained, so closing does not reset the connection.
func TestHangup(t *testing.T) {
	p := newPKI(t)
	cfg, err := ServerTLS(TLSOptions{Cert: p.certFile, Key: p.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		tls, w bool
	}{{"tcp", false, false}, {"ssl", true, false}, {"ws", false, true}, {"wss", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			type result struct {
				err error
				d   time.Duration
			}
			done := make(chan result, 1)
			go func() {
				nc, err := l.Accept()
				if err != nil {
					done <- result{err: err}
					return
				}
				// As the front layers them: replayed bytes under TLS and over it.
				c := WithPrefix(nc, nil)
				if tc.tls {
					sc := tls.Server(c, cfg)
					if err := sc.Handshake(); err != nil {
						done <- result{err: err}
						return
					}
					c = WithPrefix(sc, []byte{})
				}
				if tc.w {
					c = websocket.NewConn(c, nil, false)
				}
				if _, err := c.Write([]byte("answer")); err != nil {
					done <- result{err: err}
					return
				}
				start := time.Now()
				err = Hangup(c, 5*time.Second)
				done <- result{err, time.Since(start)}
			}()
			raw, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.SetDeadline(time.Now().Add(10 * time.Second))
			rec := &recorder{Conn: raw}
			var c, under net.Conn = rec, rec
			if tc.tls {
				// TLS 1.2: a close_notify is a record of type alert (21) in
				// the clear; 1.3 would hide it.
				c = tls.Client(rec, &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12})
				under = c
			}
			if tc.w {
				c = websocket.NewConn(c, nil, true)
			}
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "answer" {
				t.Fatalf("client read %q, %v; want the answer, then a clean end", got, err)
			}
			if tc.w {
				// The close frame ended the WebSocket; under it, nothing
				// more may come but the end of TLS (or TCP).
				if rest, err := io.ReadAll(under); err != nil || len(rest) > 0 {
					t.Fatalf("after the close frame: %q, %v; want a clean end", rest, err)
				}
			}
			if tc.tls {
				if typ := lastRecordType(t, rec.got); typ != 21 {
					t.Fatalf("the last record before the end is of type %d, not an alert (close_notify)", typ)
				}
			}
			// Late bytes, then our end: Hangup must read them, not reset.
			if _, err := raw.Write([]byte("late bytes the server never reads")); err != nil {
				t.Fatal(err)
			}
			raw.(*net.TCPConn).CloseWrite()
			r := <-done
			if r.err != nil {
				t.Fatalf("Hangup: %v", r.err)
			}
			if r.d > 2*time.Second {
				t.Errorf("Hangup took %s although the client closed at once", r.d)
			}
			time.Sleep(50 * time.Millisecond) // for a reset to arrive, if one was sent
			// A reset after the FIN leaves reads at EOF but sets the
			// socket's error (EPIPE or ECONNRESET, by TCP state).
			if serr := socketError(t, raw); serr != 0 {
				t.Fatalf("the client's socket got a reset (%v): the server closed with our bytes unread", serr)
			}
			if n, err := raw.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("after Hangup the client reads %d bytes, %v; want EOF", n, err)
			}
		})
	}
}

// socketError reads (and clears) a socket's pending error, SO_ERROR.
func socketError(t *testing.T, c net.Conn) syscall.Errno {
	t.Helper()
	sc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := sc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	return syscall.Errno(v)
}

// ticketCache records the session tickets a client receives.
type ticketCache struct{ puts int }

func (c *ticketCache) Get(string) (*tls.ClientSessionState, bool) { return nil, false }
func (c *ticketCache) Put(_ string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts++
	}
}

// TestNoSessionTickets: a TLS 1.3 client gets no NewSessionTicket, the
// post-handshake message that xpra's two-threaded clients cannot take
// while they send their hello.
func TestNoSessionTickets(t *testing.T) {
	p := newPKI(t)
	cfg, err := ServerTLS(TLSOptions{Cert: p.certFile, Key: p.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	c, s := pair(t)
	go func() {
		sc := tls.Server(s, cfg)
		if sc.Handshake() == nil {
			sc.Write([]byte("x"))
		}
	}()
	cache := &ticketCache{}
	tc := tls.Client(c, &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", ClientSessionCache: cache})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	// A ticket would come before the data, and is taken in by this read.
	if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if v := tc.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated %x, want TLS 1.3", v)
	}
	if cache.puts != 0 {
		t.Fatalf("the client received %d session tickets", cache.puts)
	}
}
