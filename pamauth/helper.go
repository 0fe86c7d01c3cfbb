// SPDX-License-Identifier: GPL-2.0-or-later

package pamauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/authhelper"

	"github.com/xpra-proxy/xpra-proxy/child"
)

// DefaultTimeout bounds one authentication, helper start to exit. PAM
// stacks that wait on the network (LDAP, Kerberos) get this long; a
// failed password already costs pam_unix's delay of about 2 s.
const DefaultTimeout = 10 * time.Second

// ProgramName is the helper's file name.
const ProgramName = "xpra-proxy-pam"

// LibexecPath is where packages install the helper.
const LibexecPath = "/usr/libexec/xpra-proxy/" + ProgramName

// ErrTimeout is the error of a helper killed for taking too long.
var ErrTimeout = errors.New("pamauth: the PAM helper took too long and was killed")

// FindProgram returns the helper beside the running program, else the
// packaged one.
func FindProgram() string {
	return authhelper.FindProgram(ProgramName, LibexecPath)
}

// CheckProgram refuses a helper that someone other than root (or the
// user running the supervisor) could replace: the supervisor runs it as
// root with a password in hand.
func CheckProgram(path string) error {
	if err := authhelper.CheckProgram(path); err != nil {
		return fmt.Errorf("pamauth: %w", err)
	}
	return nil
}

// Helper runs the PAM helper program, once per authentication.
type Helper struct {
	Path    string
	Timeout time.Duration // DefaultTimeout when zero
}

// Run execs the helper, sends r and returns its reply. A Reply is PAM's
// answer, success or not; an error means there was no valid answer (the
// helper is missing, crashed, timed out or sent garbage), which is never
// success.
func (h Helper) Run(ctx context.Context, r Request) (Reply, error) {
	if err := r.Check(); err != nil {
		return Reply{}, err
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var reply Reply
	err := authhelper.Exchange(ctx, timeout, FdName,
		func(theirs *os.File) (*exec.Cmd, error) {
			// A clean environment: nothing of the supervisor's may steer
			// the helper or the PAM modules it loads. Its own session and
			// group, and it dies with the supervisor (child.PAM).
			return child.PAM.Command(child.Launch{Path: h.Path, Fds: map[string]*os.File{FdName: theirs}})
		},
		killTree,
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
		return Reply{}, fmt.Errorf("pamauth: %w", err)
	}
	return reply, nil
}

// killTree kills the helper and everything it started. Its process group
// is not enough: pam_exec, for one, runs its program in a new session. So
// the helper and then, pass by pass, the children of what is already
// stopped are stopped (a stopped parent cannot reap a child, so no pid
// found can be reused meanwhile), and then all of them are killed. The
// helper itself must not have been reaped yet.
func killTree(pid int) {
	stopped := map[int]bool{pid: true}
	syscall.Kill(pid, syscall.SIGSTOP)
	for range 64 { // a bound on depth, against a module forking forever
		found := false
		for _, p := range children(stopped) {
			syscall.Kill(p, syscall.SIGSTOP)
			stopped[p] = true
			found = true
		}
		if !found {
			break
		}
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	for p := range stopped {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// children lists the processes whose parent is in parents and that are
// not in it themselves, from /proc.
func children(parents map[int]bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || parents[p] {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone already
		}
		// "pid (comm) state ppid ...": comm may hold anything but the
		// last ')' ends it.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && parents[ppid] {
			out = append(out, p)
		}
	}
	return out
}
