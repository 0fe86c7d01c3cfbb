// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Listener is a listening socket and the type that selects its auth
// modules ("tcp" or "unix", as xpra's --tcp-auth / --auth).
type Listener struct {
	net.Listener
	Type string
}

// Listen opens the configured sockets, or takes systemd's when the process
// was socket-activated. Activated sockets are told apart by
// FileDescriptorName= ("tcp", "unix", or any name: then by address family).
func Listen(c Config) ([]Listener, error) {
	named, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	var out []Listener
	metrics := false
	for name, ls := range named {
		for _, l := range ls {
			if l == nil {
				continue // not a stream socket
			}
			typ := listenerType(name, l)
			metrics = metrics || typ == MetricsType
			out = append(out, Listener{Listener: l, Type: typ})
		}
	}
	if c.MetricsBind != "" && !metrics {
		// No TCP_DEFER_ACCEPT: a scraper's connection is not a login.
		l, err := net.Listen("tcp", c.MetricsBind)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("metrics-bind %s: %w", c.MetricsBind, err)
		}
		out = append(out, Listener{Listener: l, Type: MetricsType})
	}
	lc := net.ListenConfig{Control: deferAccept(c.FirstPacketTimeout.Duration)}
	for _, addr := range c.BindTCP {
		l, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("bind-tcp %s: %w", addr, err)
		}
		out = append(out, Listener{Listener: l, Type: "tcp"})
	}
	for _, path := range c.BindUnix {
		// A stale socket file from a previous run would make bind fail.
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(path)
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("bind-unix %s: %w", path, err)
		}
		// Anyone may connect: authentication decides, as for TCP.
		if err := os.Chmod(path, 0o666); err != nil {
			closeAll(out)
			return nil, fmt.Errorf("bind-unix %s: %w", path, err)
		}
		out = append(out, Listener{Listener: l, Type: "unix"})
	}
	if !slices.ContainsFunc(out, func(l Listener) bool { return l.Type != MetricsType }) {
		closeAll(out)
		return nil, fmt.Errorf("nothing to listen on: give --bind-tcp or --bind-unix, or start through xpra-proxy.socket")
	}
	return out, nil
}

// deferAccept sets TCP_DEFER_ACCEPT on a TCP listener: the kernel
// completes the accept only once the client has sent data, so a
// connection that sends nothing gets no pre-auth process. Linux turns the
// seconds into SYN-ACK retransmissions (1+2+4+8 s: 10 s waits about 15 s)
// and then accepts the connection anyway, without data, on the client's
// next ACK: the pre-auth stage's first-packet timeout ends those.
// systemd's sockets get it from DeferAcceptSec= in xpra-proxy.socket.
func deferAccept(d time.Duration) func(network, address string, rc syscall.RawConn) error {
	secs := int(d / time.Second)
	return func(_, _ string, rc syscall.RawConn) error {
		if secs <= 0 {
			return nil
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, secs)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("TCP_DEFER_ACCEPT: %w", serr)
		}
		return nil
	}
}

func listenerType(name string, l net.Listener) string {
	switch n := strings.ToLower(name); n {
	case "tcp", "unix", MetricsType:
		return n
	}
	if l.Addr().Network() == "unix" {
		return "unix"
	}
	return "tcp"
}

func closeAll(ls []Listener) {
	for _, l := range ls {
		l.Close()
	}
}
