// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRootControlDir(t *testing.T) {
	for _, c := range []struct{ socket, want string }{
		{"", "/run/xpra"},
		{"off", ""},
		{"/srv/ctl/host-proxy", "/srv/ctl"},
	} {
		if got := rootControlDir(Config{ControlSocket: c.socket}); got != c.want {
			t.Errorf("control-socket %q: dir %q, want %q", c.socket, got, c.want)
		}
	}
}

// A root-only socket is bound 0600 under a hidden name, accepts once
// placed under the relay's name, and the supervisor removes it.
func TestRootControlLifecycle(t *testing.T) {
	dir := t.TempDir()
	s := &Supervisor{rootCtlDir: dir, log: slog.New(slog.DiscardHandler)}
	rc := s.bindRootControl()
	if rc == nil {
		t.Fatal("no root control socket bound")
	}
	l, err := net.FileListener(rc.file) // what the relay does with its descriptor
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s.placeRootControl(rc, 4242)
	path := s.rootControlPath(4242)
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || st.Mode&0o777 != 0o600 || int(st.Uid) != os.Geteuid() {
		t.Fatalf("%s: %v, mode %o, uid %d", path, err, st.Mode, st.Uid)
	}
	if _, err := os.Lstat(rc.tmp); !os.IsNotExist(err) {
		t.Fatalf("the hidden name %s is still there: %v", rc.tmp, err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connecting to the placed socket: %v", err)
	}
	c.Close()
	s.removeRootControl(4242)
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("%s after the relay ended: %v", path, err)
	}
}

// The sweep removes our names whose socket refuses (its relay is gone)
// and keeps live ones and every other file.
func TestSweepRootControl(t *testing.T) {
	dir := t.TempDir()
	host, _ := os.Hostname()
	dead := func(name string) string {
		p := filepath.Join(dir, name)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		l.Close()
		return p
	}
	live := func(name string) string {
		p := filepath.Join(dir, name)
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return p
	}
	plain := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		path  string
		stays bool
	}{
		{dead(host + "-proxy-101"), false},
		{dead(".xpra-proxy-relay-00ff"), false},
		{live(host + "-proxy-102"), true},
		{dead(host + "-proxy"), true},       // the supervisor's own :proxy
		{dead(host + "-10"), true},          // a session's
		{dead(host + "-proxy-e2e-7"), true}, // not a relay's name
		{plain(host + "-proxy-103"), true},  // not a socket
	}
	n, err := sweepRootControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("removed %d, want 2", n)
	}
	for _, c := range cases {
		_, err := os.Lstat(c.path)
		if stays := err == nil; stays != c.stays {
			t.Errorf("%s: stays %v, want %v", filepath.Base(c.path), stays, c.stays)
		}
	}
	if n, err := sweepRootControl(filepath.Join(dir, "missing")); n != 0 || err != nil {
		t.Errorf("a missing directory: %d, %v", n, err)
	}
}
