// SPDX-License-Identifier: GPL-2.0-or-later

// Package servetest serves an encoder front end (encode/server,
// encode/xpraenc, encode/listen) on a fresh unix socket for a test.
package servetest

import (
	"errors"
	"net"
	"path/filepath"
	"testing"
)

// Server is what every front end has.
type Server interface {
	Serve(ln *net.UnixListener) error
	Close() error
}

// Serve listens on a new socket in a temporary directory and serves it
// with srv until the test ends; then srv is closed, and Serve must have
// ended cleanly. It returns the socket's path.
func Serve(t testing.TB, srv Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		// ErrClosed: Close came before Serve started, as in a short test.
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
		ln.Close()
	})
	return path
}

// AllowAll lets every uid connect: tests may run as root, whom the
// servers refuse by default.
func AllowAll(uint32) bool { return true }
