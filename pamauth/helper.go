// SPDX-License-Identifier: GPL-2.0-or-later

package pamauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), ProgramName)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return LibexecPath
}

// CheckProgram refuses a helper that someone other than root (or the
// user running the supervisor) could replace: the supervisor runs it as
// root with a password in hand.
func CheckProgram(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("pamauth: helper path %q is not absolute", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("pamauth: helper program: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("pamauth: helper %s is not a regular file", path)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("pamauth: helper %s is not executable", path)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("pamauth: helper %s is writable by group or others (mode %v)", path, fi.Mode().Perm())
	case !ok || (st.Uid != 0 && int(st.Uid) != os.Geteuid()):
		return fmt.Errorf("pamauth: helper %s is not owned by root", path)
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
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Reply{}, fmt.Errorf("pamauth: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), FdName), os.NewFile(uintptr(fds[1]), FdName)
	defer theirs.Close()
	c, err := NewConn(ours)
	ours.Close()
	if err != nil {
		return Reply{}, err
	}
	defer c.Close()

	// A clean environment: nothing of the supervisor's may steer the
	// helper or the PAM modules it loads. Its own session and group, and
	// it dies with the supervisor (child.PAM).
	cmd, err := child.PAM.Command(child.Launch{Path: h.Path, Fds: map[string]*os.File{FdName: theirs}})
	if err != nil {
		return Reply{}, fmt.Errorf("pamauth: %w", err)
	}
	if err := child.Start(cmd); err != nil {
		return Reply{}, fmt.Errorf("pamauth: starting %s: %w", h.Path, err)
	}
	theirs.Close()
	pid := cmd.Process.Pid

	// Wait for the exit without reaping: until it is reaped the pid (and
	// the group it leads) cannot be reused, so killing -pid is always safe.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		// Not reaped here (cmd.Wait does, below), and no thread held
		// while PAM runs: a guessing storm must not grow root's threads.
		if err := child.Exited(cmd.Process); err != nil {
			// Only if it was reaped already: cmd.Wait below says so.
			slog.Debug("pamauth: waiting for the helper", "pid", pid, "err", err)
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
	if err != nil {
		// No answer: nothing to wait for.
		timedOut = time.Now().After(deadline)
		killTree(pid)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		timedOut = true
		killTree(pid)
	case <-ctx.Done():
		killTree(pid)
	}
	<-exited
	werr := cmd.Wait()
	switch {
	case timedOut:
		return Reply{}, fmt.Errorf("%w (after %s)", ErrTimeout, timeout)
	case ctx.Err() != nil:
		return Reply{}, fmt.Errorf("pamauth: %w", ctx.Err())
	case err != nil && werr != nil:
		return Reply{}, fmt.Errorf("pamauth: helper %s: %w (exit: %v)", h.Path, err, werr)
	case err != nil:
		return Reply{}, fmt.Errorf("pamauth: helper %s: %w", h.Path, err)
	case werr != nil:
		// It answered but did not exit cleanly: do not trust the answer.
		return Reply{}, fmt.Errorf("pamauth: helper %s answered but then failed: %w", h.Path, werr)
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
