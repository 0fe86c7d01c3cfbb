// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestListenDeferAccept: TCP ports the supervisor binds hold idle
// connections in the kernel for the first-packet timeout; 0 turns it off.
func TestListenDeferAccept(t *testing.T) {
	for _, tc := range []struct {
		fpt  time.Duration
		want bool
	}{{10 * time.Second, true}, {0, false}} {
		ls, err := Listen(Config{BindTCP: []string{"127.0.0.1:0"}, FirstPacketTimeout: Duration{tc.fpt}})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := ls[0].Listener.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT) })
		closeAll(ls)
		if gerr != nil {
			t.Fatal(gerr)
		}
		// Linux reports the seconds its retransmissions come to (15 for 10).
		if got := v > 0; got != tc.want {
			t.Errorf("first-packet-timeout %v: TCP_DEFER_ACCEPT %d", tc.fpt, v)
		}
		t.Logf("first-packet-timeout %v: TCP_DEFER_ACCEPT reads back %d", tc.fpt, v)
	}
}

// TestCheckTransport: what a pre-auth process may say arrived, by
// listener and TLS configuration.
func TestCheckTransport(t *testing.T) {
	withCert := func(mode string) func(string) bool {
		return FrontConfig{SSL: mode, SSLCert: "/etc/xpra/ssl-cert.pem"}.tlsCarries
	}
	noCert := FrontConfig{SSL: "on"}.tlsCarries
	for _, tc := range []struct {
		listener, transport string
		tls                 func(string) bool
		want                string // "" for a refusal
	}{
		{"tcp", "", noCert, "tcp"},
		{"tcp", "tcp", noCert, "tcp"},
		{"tcp", "ws", noCert, "ws"},
		{"tcp", "ssl", noCert, ""},
		{"tcp", "wss", noCert, ""},
		{"tcp", "ssl", withCert(""), "ssl"},
		{"tcp", "wss", withCert("auto"), "wss"},
		{"tcp", "ssl", withCert("off"), ""},
		{"tcp", "ssl", withCert("tcp"), "ssl"},
		{"tcp", "wss", withCert("tcp"), ""},
		{"tcp", "ssl", withCert("www"), ""},
		{"tcp", "wss", withCert("www"), "wss"},
		{"tcp", "unix", withCert(""), ""},
		{"unix", "", withCert(""), "unix"},
		{"unix", "tcp", withCert(""), ""},
		{"unix", "ssl", withCert(""), ""},
		{"unix", "ws", withCert(""), ""},
	} {
		got, err := checkTransport(tc.listener, tc.transport, tc.tls)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("%s listener, %q: got %q, %v; want %q", tc.listener, tc.transport, got, err, tc.want)
		}
	}
}

// TestListenSockets: the configured sockets, each with its type; a
// stale unix socket file is replaced and the new one is open to all
// (authentication decides); a failed bind is an error that names it.
func TestListenSockets(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close() // the file stays, as after a crash
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name      string
		tcp, unix []string
		want      []string // types in order; nil: an error
		err       string
	}{
		{"tcp and unix", []string{"127.0.0.1:0"}, []string{filepath.Join(dir, "a")}, []string{"tcp", "unix"}, ""},
		{"a stale socket file", nil, []string{stale}, []string{"unix"}, ""},
		{"a port in use", []string{"127.0.0.1:0", busy.Addr().String()}, nil, nil, "bind-tcp " + busy.Addr().String()},
		{"a unix path that cannot be", []string{"127.0.0.1:0"}, []string{filepath.Join(dir, "none", "s")}, nil, "bind-unix"},
		{"nothing", nil, nil, nil, "nothing to listen on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls, err := Listen(Config{BindTCP: tc.tcp, BindUnix: tc.unix})
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					closeAll(ls)
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer closeAll(ls)
			var got []string
			for _, l := range ls {
				got = append(got, l.Type)
				if l.Type == "unix" {
					fi, err := os.Stat(l.Addr().String())
					if err != nil || fi.Mode().Perm() != 0o666 {
						t.Errorf("unix socket %s: %v, %v; want mode 0666", l.Addr(), fi.Mode(), err)
					}
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("listener types %q, want %q", got, tc.want)
			}
		})
	}
}
