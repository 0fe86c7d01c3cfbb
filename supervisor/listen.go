package supervisor

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"
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
	for name, ls := range named {
		for _, l := range ls {
			if l == nil {
				continue // not a stream socket
			}
			out = append(out, Listener{Listener: l, Type: listenerType(name, l)})
		}
	}
	for _, addr := range c.BindTCP {
		l, err := net.Listen("tcp", addr)
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
	if len(out) == 0 {
		return nil, fmt.Errorf("nothing to listen on: give --bind-tcp or --bind-unix, or start through xpra-proxy.socket")
	}
	return out, nil
}

func listenerType(name string, l net.Listener) string {
	switch n := strings.ToLower(name); n {
	case "tcp", "unix":
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
