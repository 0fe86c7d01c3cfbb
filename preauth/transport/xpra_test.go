// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// versionServer accepts connections on loopback and takes each through
// the transport stack (Peek, WrapTLS, ServeHTTP) to the xpra stream,
// where it answers a version request as the pre-auth process does.
// Each connection reports the transports it went through.
func versionServer(t *testing.T, tlsCfg *tls.Config, www string) (string, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); l.Close() })
	seen := make(chan string, 8)
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				path, err := versionOne(ctx, nc, tlsCfg, www)
				if err != nil {
					path += " error: " + err.Error()
				}
				seen <- path
			}()
		}
	}()
	return l.Addr().String(), seen
}

func versionOne(ctx context.Context, nc net.Conn, tlsCfg *tls.Config, www string) (string, error) {
	kind, prefix, err := Peek(nc, MaxPeek, PeekTimeout)
	if err != nil {
		return "", err
	}
	path := kind.String()
	stream := WithPrefix(nc, prefix)
	if kind == TLS {
		tc, k, inner, err := WrapTLS(ctx, stream, tlsCfg, SSLAuto)
		if err != nil {
			return path, err
		}
		kind, stream = k, WithPrefix(tc, inner)
		path += "+" + kind.String()
	}
	if kind == HTTP {
		ws, _, err := ServeHTTP(ctx, stream, HTTPOptions{WWW: www, LinkRoots: DefaultLinkRoots})
		if err != nil {
			return path, err
		}
		defer ws.Close()
		stream = ws
		path += "+ws"
	}
	c := conn.New(stream)
	p, err := c.ReadPacket()
	if err != nil {
		return path, err
	}
	if len(p) == 0 || p[0] != packet.Hello {
		return path, fmt.Errorf("first packet %v", p[0])
	}
	if err := c.WritePacket(conn.Packet{packet.Hello, value.Dict{{Key: "version", Value: "3.1.3"}}}); err != nil {
		return path, err
	}
	// Let the client read the reply and hang up.
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, stream)
	return path, nil
}

// The real xpra 3.1.3 client asks for the version over tcp, ssl, ws and
// wss, verifying our certificate with the test CA.
func TestRealXpraClientTransports(t *testing.T) {
	xpra := testenv.Command(t, "xpra")
	if _, err := os.Stat(DefaultWWW); err != nil {
		testenv.Missing(t, "xpra's HTML5 client in "+DefaultWWW)
	}
	p := newPKI(t)
	cfg, err := ServerTLS(TLSOptions{Cert: p.certFile, Key: p.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr, seen := versionServer(t, cfg, DefaultWWW)
	home := t.TempDir()
	for _, tc := range []struct{ scheme, path string }{
		{"tcp", "xpra"},
		{"ssl", "tls+xpra"},
		{"ws", "http+ws"},
		{"wss", "tls+http+ws"},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, xpra, "version", tc.scheme+"://"+addr+"/",
				"--ssl-ca-certs="+p.caFile, "--ssl-server-verify-mode=required", "--ssl-check-hostname=yes")
			cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home, "LANG=C.UTF-8", "XDG_RUNTIME_DIR=" + home}
			cmd.Dir = home
			out, _ := cmd.CombinedOutput() // the exit code varies by version; the output says what happened
			var path string
			select {
			case path = <-seen:
			case <-ctx.Done():
				t.Fatalf("the server saw nothing; client said:\n%s", out)
			}
			if path != tc.path || !strings.Contains(string(out), "3.1.3") {
				t.Fatalf("server path %q (want %q), client said:\n%s", path, tc.path, out)
			}
		})
	}
}
