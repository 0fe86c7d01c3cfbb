// SPDX-License-Identifier: GPL-2.0-or-later

package listen

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/internal/servetest"
)

var quiet = slog.New(slog.DiscardHandler)

// serve starts a Listener whose handler says "ok" and then holds the
// connection until the peer closes it, and whose refusals say why
// (refuse) or close unanswered.
func serve(t *testing.T, limits *Limiter, allow func(uint32) bool, refuse bool) (path string, l *Listener) {
	t.Helper()
	l = &Listener{Name: "test", Allow: allow, Limits: limits, Log: quiet,
		Handle: func(uc *net.UnixConn, p Peer) {
			if p.UID != uint32(os.Getuid()) || p.PID != int32(os.Getpid()) {
				uc.Write([]byte("wrong peer\n"))
				return
			}
			uc.Write([]byte("ok\n"))
			io.Copy(io.Discard, uc)
		},
		Refuse: func(uc *net.UnixConn, _ Peer, r Refusal, why string) {
			uc.Write([]byte(map[Refusal]string{NotAllowed: "denied", Busy: "busy"}[r] + ": " + why + "\n"))
		}}
	if !refuse {
		l.Refuse = nil
	}
	path = servetest.Serve(t, l)
	return path, l
}

// dial connects and returns the server's first line, and the connection.
func dial(t *testing.T, path string) (string, *net.UnixConn) {
	t.Helper()
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(uc).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the first line: %v", err)
	}
	return strings.TrimSpace(line), uc
}

// Connections to two listeners count against one Limiter when they
// share it, and apart when they do not; the uid limit and the total
// limit each refuse with the reason.
func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name          string
		total, perUID int
		shared        bool
		// dials alternate between the two sockets; want is each one's
		// first line (prefix).
		want []string
	}{
		{"shared per uid", 10, 2, true, []string{"ok", "ok", "busy: uid", "busy: uid"}},
		{"shared total", 3, 10, true, []string{"ok", "ok", "ok", "busy: 3 connections"}},
		{"apart per uid", 10, 1, false, []string{"ok", "ok", "busy: uid", "busy: uid"}},
		{"apart total", 2, 10, false, []string{"ok", "ok", "ok", "ok", "busy: 2 connections"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			la := NewLimiter(tc.total, tc.perUID)
			lb := la
			if !tc.shared {
				lb = NewLimiter(tc.total, tc.perUID)
			}
			pa, a := serve(t, la, servetest.AllowAll, true)
			pb, b := serve(t, lb, servetest.AllowAll, true)
			for i, want := range tc.want {
				path := pa
				if i%2 == 1 {
					path = pb
				}
				if got, _ := dial(t, path); !strings.HasPrefix(got, want) {
					t.Fatalf("dial %d: %q, want %q", i, got, want)
				}
			}
			if n := a.Conns() + b.Conns(); n != countOK(tc.want) {
				t.Errorf("%d connections held, want %d", n, countOK(tc.want))
			}
		})
	}
}

func countOK(lines []string) int {
	n := 0
	for _, l := range lines {
		if l == "ok" {
			n++
		}
	}
	return n
}

// A closed connection gives its place back, to either socket.
func TestLimitReleased(t *testing.T) {
	lim := NewLimiter(10, 1)
	pa, a := serve(t, lim, servetest.AllowAll, true)
	pb, _ := serve(t, lim, servetest.AllowAll, true)
	_, uc := dial(t, pa)
	if got, _ := dial(t, pb); !strings.HasPrefix(got, "busy") {
		t.Fatalf("second connection of the uid: %q", got)
	}
	uc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for a.Conns() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection is still counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, _ := dial(t, pb); got != "ok" {
		t.Fatalf("after the first closed: %q", got)
	}
}

// A uid the allow function refuses is told so and never reaches the
// handler; without Refuse it is closed unanswered.
func TestNotAllowed(t *testing.T) {
	path, _ := serve(t, NewLimiter(10, 10), func(uint32) bool { return false }, true)
	if got, _ := dial(t, path); got != "denied: uid "+strconv.Itoa(os.Getuid())+" may not use this encoder" {
		t.Fatalf("got %q", got)
	}
	path, _ = serve(t, NewLimiter(10, 10), func(uint32) bool { return false }, false)
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := uc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %d bytes, %v; want EOF", n, err)
	}
}

// Close drops held connections, ends Serve, and refuses nothing after:
// the listener is gone.
func TestClose(t *testing.T) {
	path, l := serve(t, NewLimiter(10, 10), servetest.AllowAll, true)
	_, uc := dial(t, path)
	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a connection held")
	}
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := uc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("held connection after Close: %v, want EOF", err)
	}
	if l.Conns() != 0 {
		t.Fatalf("%d connections counted after Close", l.Conns())
	}
	if err := l.Serve(nil); err != net.ErrClosed {
		t.Fatalf("Serve after Close: %v", err)
	}
}
