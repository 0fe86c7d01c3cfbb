// SPDX-License-Identifier: GPL-2.0-or-later

package ldapauth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/authhelper"

	"github.com/xpra-proxy/xpra-proxy/child"
)

// DefaultTimeout bounds one authentication, connect to helper exit.
const DefaultTimeout = 10 * time.Second

// ErrTimeout is the error of a helper killed for taking too long.
var ErrTimeout = errors.New("ldapauth: the LDAP helper took too long and was killed")

// FindProgram returns the helper beside the running program, else the
// packaged one.
func FindProgram() string {
	return authhelper.FindProgram(ProgramName, LibexecPath)
}

// CheckProgram refuses a helper that someone other than root (or the
// user running the supervisor) could replace: it is handed passwords.
func CheckProgram(path string) error {
	if err := authhelper.CheckProgram(path); err != nil {
		return fmt.Errorf("ldapauth: %w", err)
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
	var reply Reply
	err := authhelper.Exchange(ctx, timeout, FdName,
		func(theirs *os.File) (*exec.Cmd, error) {
			l := child.Launch{Path: h.Path, Cred: h.Cred, Fds: map[string]*os.File{FdName: theirs, DirectoryFd: dir}}
			if h.Stderr != nil {
				l.Stderr = h.Stderr
			}
			return child.LDAP.Command(l)
		},
		// Its own session (Setsid): the group is everything it started.
		func(pid int) { syscall.Kill(-pid, syscall.SIGKILL) },
		func(hc *authhelper.Conn) error {
			c := &Conn{c: hc}
			if err := c.SendRequest(r); err != nil {
				return err
			}
			var err error
			reply, err = c.RecvReply()
			return err
		})
	switch {
	case errors.Is(err, authhelper.ErrTimeout):
		return Reply{}, fmt.Errorf("%w (after %s)", ErrTimeout, timeout)
	case err != nil:
		return Reply{}, fmt.Errorf("ldapauth: %w", err)
	}
	return reply, nil
}
