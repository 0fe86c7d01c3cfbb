// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
)

// BenchmarkRelay measures the byte stream through the server side of a
// connection over loopback, as the pre-auth and relay processes will see
// it: plain TCP, or TLS terminated by Peek + WrapTLS (Go's default suite
// negotiation: TLS 1.3, AES-GCM), both directions, 64 KiB writes.
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime 2s ./preauth/transport/
func BenchmarkRelay(b *testing.B) {
	p := newPKI(b)
	cfg, err := ServerTLS(TLSOptions{Cert: p.certFile, Key: p.keyFile})
	if err != nil {
		b.Fatal(err)
	}
	clientCfg := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"}
	for _, useTLS := range []bool{false, true} {
		for _, up := range []bool{true, false} {
			name := map[bool]string{false: "plain", true: "tls"}[useTLS] + map[bool]string{true: "/client-to-server", false: "/server-to-client"}[up]
			b.Run(name, func(b *testing.B) {
				relayOnce(b, useTLS, up, cfg, clientCfg)
			})
		}
	}
}

func relayOnce(b *testing.B, useTLS, up bool, cfg, clientCfg *tls.Config) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	n := b.N
	done := make(chan error, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer nc.Close()
		kind, prefix, err := Peek(nc, MaxPeek, PeekTimeout)
		if err != nil {
			done <- err
			return
		}
		conn := WithPrefix(nc, prefix)
		if kind == TLS {
			tc, _, inner, err := WrapTLS(context.Background(), conn, cfg, SSLAuto)
			if err != nil {
				done <- err
				return
			}
			conn = WithPrefix(tc, inner)
		}
		if up {
			_, err = io.Copy(io.Discard, conn)
		} else {
			out := make([]byte, chunk)
			for range n {
				if _, err = conn.Write(out); err != nil {
					break
				}
			}
		}
		done <- err
	}()
	var c net.Conn
	if useTLS {
		c, err = tls.Dial("tcp", l.Addr().String(), clientCfg)
	} else {
		c, err = net.Dial("tcp", l.Addr().String())
	}
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// An xpra chunk header first, so the server's sniffing decides at once.
	if _, err := c.Write([]byte("P\x01\x00\x00\x00\x00\x00\x00")); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(chunk)
	b.ResetTimer()
	if up {
		for range n {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		c.(closeWriter).CloseWrite()
	} else {
		if _, err := io.CopyN(io.Discard, c, int64(n)*chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}
