// SPDX-License-Identifier: GPL-2.0-or-later

package control

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/sockdir"
)

func TestPath(t *testing.T) {
	for _, tc := range []struct {
		dir, host string
		pid       int
		want      string
	}{
		{"/run/user/1000/xpra", "vm", 1234, "/run/user/1000/xpra/vm-proxy-1234"},
		{"/run/xpra/", "my.host", 7, "/run/xpra/my.host-proxy-7"},
	} {
		if got := Path(tc.dir, tc.host, tc.pid); got != tc.want {
			t.Errorf("Path(%q, %q, %d) = %q, want %q", tc.dir, tc.host, tc.pid, got, tc.want)
		}
	}
}

// TestListenMode: the socket is 0600 and the caller's whatever the umask.
func TestListenMode(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o077, 0o277} {
		path := filepath.Join(t.TempDir(), "sub", "h-proxy-1")
		old := syscall.Umask(umask)
		l, err := Listen(path, os.Getuid())
		syscall.Umask(old)
		if err != nil {
			t.Fatalf("umask %03o: %v", umask, err)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("umask %03o: mode %v, want a 0600 socket", umask, fi.Mode())
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() {
			t.Errorf("owner %d", st.Uid)
		}
		if dfi, err := os.Stat(filepath.Dir(path)); err != nil || dfi.Mode().Perm()&0o077 != 0 {
			t.Errorf("umask %03o: created directory %v, %v: want no group or other access", umask, dfi.Mode(), err)
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("umask %03o: the owner cannot connect: %v", umask, err)
		}
		c.Close()
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("Close left the socket: %v", err)
		}
	}
}

func TestListenExisting(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(t *testing.T, path string) (cleanup func())
		wantErr string // "" : Listen succeeds
	}{
		{name: "live socket", wantErr: "live", setup: func(t *testing.T, path string) func() {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			return func() { l.Close() }
		}},
		{name: "dead socket", setup: func(t *testing.T, path string) func() {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
			return func() {}
		}},
		{name: "regular file", wantErr: "in the way", setup: func(t *testing.T, path string) func() {
			if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			return func() {}
		}},
		{name: "directory", wantErr: "in the way", setup: func(t *testing.T, path string) func() {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			return func() {}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "h-proxy-2")
			defer tc.setup(t, path)()
			before, _ := os.Lstat(path)
			l, err := Listen(path, os.Getuid())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				l.Close()
				return
			}
			if err == nil {
				l.Close()
				t.Fatalf("Listen replaced a %s", tc.name)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want %q", err, tc.wantErr)
			}
			after, aerr := os.Lstat(path)
			if aerr != nil || !os.SameFile(before, after) {
				t.Errorf("the %s was touched: %v", tc.name, aerr)
			}
		})
	}
}

// TestListenWrongOwner: a socket that does not end up owned by the given
// uid is refused and removed.
func TestListenWrongOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h-proxy-3")
	l, err := Listen(path, os.Getuid()+1)
	if err == nil {
		l.Close()
		t.Fatal("Listen accepted a socket owned by another uid")
	}
	if !strings.Contains(err.Error(), "owned by uid") {
		t.Errorf("error %q", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("refused socket left behind: %v", err)
	}
}

// TestListenerCloseKeepsSuccessor: Close removes only the file it bound.
func TestListenerCloseKeepsSuccessor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h-proxy-4")
	l, err := Listen(path, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	l2, err := Listen(path, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("closing the first listener removed its successor: %v", err)
	}
}

// TestNotASession: the relay's own session scan (sockdir) never takes a
// live control socket for a session, as the reference skips ":proxy-*".
func TestNotASession(t *testing.T) {
	dir := t.TempDir()
	host := sockdir.Hostname()
	l, err := Listen(Path(dir, host, os.Getpid()), os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sessions, err := sockdir.List([]string{dir}, host)
	if err != nil || len(sessions) != 0 {
		t.Errorf("sockdir.List found %v, %v; want no session", sessions, err)
	}
}

// TestListenAtomic: the socket appears under its name already listening
// (bound under another name first), and nothing else stays behind.
func TestListenAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "h-proxy-1")
	l, err := Listen(path, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr().String() != path {
		t.Errorf("Addr %q, want %q", l.Addr(), path)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "h-proxy-1" {
		t.Errorf("directory holds %v, want only the socket", entries)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	l.Close()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("after Close the directory holds %v", entries)
	}
}
