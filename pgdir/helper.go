// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/authhelper"
	"github.com/xpra-proxy/xpra-proxy/child"
)

// The helper program.
const (
	ProgramName = "xpra-proxy-directory"
	LibexecPath = "/usr/libexec/xpra-proxy/" + ProgramName
	// DefaultUser is the helper's system user (packaging/sysusers.d).
	DefaultUser = "xpra-proxy-directory"
	// FdName is the helper's one descriptor: the protocol's socket.
	FdName = "directory"
)

// FindProgram returns the helper beside the running program, else the
// packaged one.
func FindProgram() string { return authhelper.FindProgram(ProgramName, LibexecPath) }

// CheckProgram refuses a helper that someone other than root could
// replace: it is handed the database's password.
func CheckProgram(path string) error {
	if err := authhelper.CheckProgram(path); err != nil {
		return fmt.Errorf("pgdir: %w", err)
	}
	return nil
}

// Helper is how Start runs xpra-proxy-directory.
type Helper struct {
	Path string
	// Cred is its identity (its own user, no groups); nil only when the
	// caller is not root (tests).
	Cred *syscall.Credential
	// Stderr is where it logs (nil: the supervisor's stderr).
	Stderr *os.File
}

// Start opens the shared directory through the helper h (OpenWith).
func Start(cfg Config, h Helper) (*DB, error) {
	if err := CheckProgram(h.Path); err != nil {
		return nil, err
	}
	return OpenWith(cfg, h.connect)
}

// connect execs the helper with a fresh socketpair.
func (h Helper) connect() (*Backend, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), FdName), os.NewFile(uintptr(fds[1]), FdName)
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, err
	}
	l := child.Launch{Path: h.Path, Cred: h.Cred, Fds: map[string]*os.File{FdName: theirs}}
	if h.Stderr != nil {
		l.Stderr = h.Stderr
	}
	cmd, err := child.Directory.Command(l)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := child.Start(cmd); err != nil {
		conn.Close()
		return nil, fmt.Errorf("starting %s: %w", h.Path, err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	var mu sync.Mutex // held while reaping: kill never signals a reused pid
	reaped := false
	var werr error
	go func() {
		defer close(done)
		if err := child.Exited(cmd.Process); err != nil {
			werr = err
		}
		mu.Lock()
		reaped = true
		if err := cmd.Wait(); err != nil && werr == nil {
			werr = err
		}
		mu.Unlock()
		conn.Close()
	}()
	kill := func() {
		mu.Lock()
		if !reaped {
			// Its own session (Setsid): the group is all it started.
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		mu.Unlock()
		conn.Close()
	}
	return &Backend{Conn: conn, Kill: kill, Done: done, Exit: func() error {
		if werr == nil {
			return fmt.Errorf("pid %d exited", pid)
		}
		return fmt.Errorf("pid %d: %w", pid, werr)
	}}, nil
}
