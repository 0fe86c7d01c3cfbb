package supervisor

import (
	"net"
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
