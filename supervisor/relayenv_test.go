// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"io"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFilterEnv: a module's env options reach the relay, except what
// would change how the worker program itself runs or what the
// supervisor sets.
func TestFilterEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"none", nil, nil},
		{"plain", map[string]string{"XPRA_OPT": "1", "DISPLAY": ":10", "a_b9": "x y"}, []string{"DISPLAY=:10", "XPRA_OPT=1", "a_b9=x y"}},
		{"loader and runtime", map[string]string{"LD_PRELOAD": "/tmp/x.so", "LD_LIBRARY_PATH": "/tmp", "GODEBUG": "x", "GOMAXPROCS": "1", "KEEP": "1"}, []string{"KEEP=1"}},
		{"set by the supervisor", map[string]string{"PATH": "/tmp", "HOME": "/", "USER": "root", "LOGNAME": "root", "XPRA_PROXY_FDS": "client:3"}, nil},
		{"bad names", map[string]string{"": "x", "1A": "x", "A-B": "x", "A=B": "x", "A B": "x"}, nil},
		{"NUL in a value", map[string]string{"A": "x\x00LD_PRELOAD=/tmp/x.so", "B": "ok"}, []string{"B=ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := filterEnv(tc.env)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestConfidential: the pam module gets a password only where no one
// between the client and us reads it.
func TestConfidential(t *testing.T) {
	for _, tc := range []struct {
		typ, transport string
		want           bool
		host           string
	}{
		{"tcp", "tcp", false, "192.0.2.1"},
		{"tcp", "ws", false, "192.0.2.1"},
		{"tcp", "ssl", true, "192.0.2.1"},
		{"tcp", "wss", true, "192.0.2.1"},
		{"unix", "unix", true, ""},
	} {
		x := exchange{typ: tc.typ, transport: tc.transport, peer: "192.0.2.1:4711"}
		if tc.typ == "unix" {
			x.peer = "unix:/run/xpra/socket"
		}
		if got := x.confidential(); got != tc.want {
			t.Errorf("%s over %s: confidential %v, want %v", tc.transport, tc.typ, got, tc.want)
		}
		if got := x.remoteHost(); got != tc.host {
			t.Errorf("%s over %s: remote host %q, want %q", tc.transport, tc.typ, got, tc.host)
		}
	}
}

// TestStreamPair: the relay's end and the transport's end carry bytes
// both ways and do not leak into other children.
func TestStreamPair(t *testing.T) {
	a, b, err := streamPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	for _, f := range []interface{ Fd() uintptr }{a, b} {
		flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("descriptor %d: flags %#x, %v; want close-on-exec", f.Fd(), flags, err)
		}
		typ, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_TYPE)
		if err != nil || typ != syscall.SOCK_STREAM {
			t.Errorf("descriptor %d: socket type %d, %v; want a stream", f.Fd(), typ, err)
		}
	}
	for _, dir := range [][2]interface {
		io.Reader
		io.Writer
	}{{a, b}, {b, a}} {
		if _, err := dir[0].Write([]byte("xpra")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(dir[1], buf); err != nil || string(buf) != "xpra" {
			t.Errorf("read %q, %v", buf, err)
		}
	}
}
