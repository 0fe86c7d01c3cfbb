// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"errors"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// signalOf returns the signal a child that cmd.Wait reported on died of.
func signalOf(err error) (syscall.Signal, bool) {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0, false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

// logSignalled logs a child that died of a signal, by the signal's name.
// SIGSYS is its sandbox killing it for a forbidden system call: either a
// compromised process or a call missing from its filter (sandbox
// package), an error either way. SIGKILL is mostly ours (login timeout,
// shutdown).
func (s *Supervisor) logSignalled(what string, pid int, err error) {
	sig, ok := signalOf(err)
	if !ok {
		return
	}
	args := []any{"pid", pid, "signal", unix.SignalName(sig)}
	switch sig {
	case syscall.SIGSYS:
		s.log.Error(what+" killed by its sandbox (a forbidden system call; see the kernel log for which)", args...)
	case syscall.SIGKILL:
		s.log.Info(what+" killed", args...)
	default:
		s.log.Warn(what+" died of a signal", args...)
	}
}
