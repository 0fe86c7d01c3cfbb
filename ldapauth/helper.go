// SPDX-License-Identifier: GPL-2.0-or-later

package ldapauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/child"
)

// DefaultTimeout bounds one authentication, connect to helper exit.
const DefaultTimeout = 10 * time.Second

// ErrTimeout is the error of a helper killed for taking too long.
var ErrTimeout = errors.New("ldapauth: the LDAP helper took too long and was killed")

// FindProgram returns the helper beside the running program, else the
// packaged one.
func FindProgram() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), ProgramName)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return LibexecPath
}

// CheckProgram refuses a helper that someone other than root (or the
// user running the supervisor) could replace: it is handed passwords.
func CheckProgram(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("ldapauth: helper path %q is not absolute", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("ldapauth: helper program: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("ldapauth: helper %s is not a regular file", path)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("ldapauth: helper %s is not executable", path)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("ldapauth: helper %s is writable by group or others (mode %v)", path, fi.Mode().Perm())
	case !ok || (st.Uid != 0 && int(st.Uid) != os.Geteuid()):
		return fmt.Errorf("ldapauth: helper %s is not owned by root", path)
	}
	return nil
}

// Helper runs the LDAP helper program, once per authentication.
type Helper struct {
	Path string
	// Cred is the helper's identity: the LDAP user, no groups. Nil only
	// when the caller is not root (tests).
	Cred *syscall.Credential
	// Stderr is where the helper logs (nil: the supervisor's stderr).
	Stderr *os.File
}

// Run execs the helper with the directory connection dir and sends it r,
// and returns its reply. A Reply is the directory's answer, success or
// not; an error means there was no valid answer (the helper is missing,
// crashed, timed out or sent garbage), which is never success. The helper
// is killed at r's timeout.
func (h Helper) Run(ctx context.Context, r Request, dir *os.File) (Reply, error) {
	if err := r.Check(); err != nil {
		return Reply{}, err
	}
	timeout := time.Duration(r.TimeoutMS) * time.Millisecond
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Reply{}, fmt.Errorf("ldapauth: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), FdName), os.NewFile(uintptr(fds[1]), FdName)
	defer theirs.Close()
	c, err := NewConn(ours)
	ours.Close()
	if err != nil {
		return Reply{}, err
	}
	defer c.Close()

	l := child.Launch{Path: h.Path, Cred: h.Cred, Fds: map[string]*os.File{FdName: theirs, DirectoryFd: dir}}
	if h.Stderr != nil {
		l.Stderr = h.Stderr
	}
	cmd, err := child.LDAP.Command(l)
	if err != nil {
		return Reply{}, fmt.Errorf("ldapauth: %w", err)
	}
	if err := child.Start(cmd); err != nil {
		return Reply{}, fmt.Errorf("ldapauth: starting %s: %w", h.Path, err)
	}
	theirs.Close()
	pid := cmd.Process.Pid

	// Wait for the exit without reaping, so that the pid (and the group
	// it leads: Setsid) cannot be reused before the kill below.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		if err := child.Exited(cmd.Process); err != nil {
			slog.Debug("ldapauth: waiting for the helper", "pid", pid, "err", err)
		}
	}()
	deadline := time.Now().Add(timeout)
	c.c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Now()) })
	defer stop()

	reply, err := func() (Reply, error) {
		if err := c.SendRequest(r); err != nil {
			return Reply{}, err
		}
		return c.RecvReply()
	}()
	timedOut := false
	kill := func() { syscall.Kill(-pid, syscall.SIGKILL) }
	if err != nil {
		timedOut = time.Now().After(deadline)
		kill()
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		timedOut = true
		kill()
	case <-ctx.Done():
		kill()
	}
	<-exited
	werr := cmd.Wait()
	switch {
	case timedOut:
		return Reply{}, fmt.Errorf("%w (after %s)", ErrTimeout, timeout)
	case ctx.Err() != nil:
		return Reply{}, fmt.Errorf("ldapauth: %w", ctx.Err())
	case err != nil && werr != nil:
		return Reply{}, fmt.Errorf("ldapauth: helper %s: %w (exit: %v)", h.Path, err, werr)
	case err != nil:
		return Reply{}, fmt.Errorf("ldapauth: helper %s: %w", h.Path, err)
	case werr != nil:
		// It answered but did not exit cleanly: do not trust the answer.
		return Reply{}, fmt.Errorf("ldapauth: helper %s answered but then failed: %w", h.Path, werr)
	}
	return reply, nil
}
