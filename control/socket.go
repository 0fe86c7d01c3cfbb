// SPDX-License-Identifier: GPL-2.0-or-later

// Package control is a relay worker's per-connection control socket, the
// `:proxy-<pid>` pseudo display of xpra's proxy instances (PROXY.md §2.16):
// a unix socket in the session owner's socket directory that the real
// `xpra info`, `xpra version`, `xpra stop` and `xpra list` tools understand,
// and Query, the small client `xpra-proxy list` uses.
package control

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Path is where the control socket of the relay worker pid lives: xpra
// names a display's socket "<hostname>-<display>" (PROTOCOL.md §7.2), and
// proxy instances use the display "proxy-<pid>", so `xpra list` shows it
// as ":proxy-<pid>" and `xpra info :proxy-<pid>` finds it.
func Path(dir, hostname string, pid int) string {
	return filepath.Join(dir, hostname+"-proxy-"+strconv.Itoa(pid))
}

// backlog is larger than the reference's 5: a connect to a full unix
// backlog fails with EAGAIN at once, and xpra's socket probe takes that
// for a dead socket, which `xpra list` then deletes.
const backlog = 64

// probeTimeout bounds the connect test of an existing socket file.
const probeTimeout = time.Second

// Listen creates the control socket at path, mode 0600 whatever the umask,
// and checks that it belongs to owner (the caller already runs as that
// uid, so nothing is chowned). A live socket at path is never replaced; a
// dead one (connection refused) is removed first, as is a missing
// directory created (0700). Closing the listener removes the socket file.
func Listen(path string, owner int) (net.Listener, error) {
	if dir := filepath.Dir(path); !exists(dir) {
		// As xpra's mksockdir: 0700, which a narrow umask must not reduce
		// to something we cannot bind in.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control socket directory: %w", err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control socket directory: %w", err)
		}
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // net.FileListener holds its own duplicate
	// Linux gives the socket file the socket inode's mode minus the umask:
	// narrowing the inode first means the file never exists with wider
	// permissions than 0600, whatever umask the process has.
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return nil, fmt.Errorf("control socket %s: fchmod: %w", path, err)
	}
	// Bound under a name no xpra tool takes for a display, and renamed
	// into place once listening: under its real name the socket always
	// accepts, so `xpra list` (or another relay's sweep) never finds it
	// refusing, which they take for a dead socket and delete.
	tmp := filepath.Join(filepath.Dir(path), ".binding-"+filepath.Base(path))
	_ = os.Remove(tmp) // ours by name (our pid): left by a worker that died here
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: tmp}); err != nil {
		return nil, fmt.Errorf("control socket %s: bind: %w", path, err)
	}
	var st unix.Stat_t
	placed, ok := false, false
	defer func() {
		if !ok {
			if placed {
				_ = os.Remove(path)
			} else {
				_ = os.Remove(tmp)
			}
		}
	}()
	// A umask like 0277 would have left 0400, which the owner cannot connect
	// to; chmod only ever restores up to 0600.
	if err := os.Chmod(tmp, 0o600); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := unix.Lstat(tmp, &st); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Mode&0o7777 != 0o600 {
		return nil, fmt.Errorf("control socket %s: mode %o, want a socket with 0600", path, st.Mode)
	}
	if int(st.Uid) != owner {
		return nil, fmt.Errorf("control socket %s: owned by uid %d, want %d", path, st.Uid, owner)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return nil, fmt.Errorf("control socket %s: listen: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	placed = true
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ok = true
	return &listener{Listener: l, path: path, dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// clearStale removes a dead socket at path and refuses a live one, or any
// file that is not a socket.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control socket %s: a %v file is in the way", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("control socket %s: already in use by a live process", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		// Nobody listens: left behind by a worker that died.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("control socket %s: removing a dead socket: %w", path, err)
		}
		return nil
	case errors.Is(err, syscall.ENOENT):
		return nil
	}
	// EACCES, EAGAIN (a full backlog: alive) or anything else: not ours to remove.
	return fmt.Errorf("control socket %s: an existing socket is in the way: %w", path, err)
}

// listener removes its socket file on Close, but only while the file is
// still the one it bound (the inode), never a successor's.
type listener struct {
	net.Listener
	path     string
	dev, ino uint64
}

// Addr is the socket's path (the kernel still knows it by the name it
// was bound under).
func (l *listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *listener) Close() error {
	err := l.Listener.Close()
	var st unix.Stat_t
	if unix.Lstat(l.path, &st) == nil && uint64(st.Dev) == l.dev && uint64(st.Ino) == l.ino {
		if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("removing control socket: %w", rerr))
		}
	}
	return err
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
