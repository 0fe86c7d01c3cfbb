// SPDX-License-Identifier: GPL-2.0-or-later

package authhelper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/child"
)

// ErrTimeout is the error of a helper killed at its deadline.
var ErrTimeout = errors.New("the helper took too long and was killed")

// Exchange is one helper's whole life. command builds the helper's
// command with theirs, the helper's end of a fresh SOCK_SEQPACKET pair
// named fdName; the helper is started, talk runs on our end under the
// deadline, and the helper is killed (kill, given its pid) when talk
// fails, at the deadline or when ctx ends, and reaped before Exchange
// returns. An error means there was no answer to trust, never success:
// one that wraps ErrTimeout, ctx's error, talk's, or the helper's exit.
func Exchange(ctx context.Context, timeout time.Duration, fdName string,
	command func(theirs *os.File) (*exec.Cmd, error), kill func(pid int), talk func(*Conn) error) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), fdName), os.NewFile(uintptr(fds[1]), fdName)
	defer theirs.Close()
	c, err := NewConn(ours)
	ours.Close()
	if err != nil {
		return err
	}
	defer c.Close()

	cmd, err := command(theirs)
	if err != nil {
		return err
	}
	if err := child.Start(cmd); err != nil {
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	theirs.Close()
	pid := cmd.Process.Pid

	// Wait for the exit without reaping: until cmd.Wait reaps it, the pid
	// (and the group it leads) cannot be reused, so kill is always safe.
	// No thread is held while the helper runs (child.Exited polls a
	// pidfd): a guessing storm must not grow root's threads.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		if err := child.Exited(cmd.Process); err != nil {
			// Only if it was reaped already: cmd.Wait below says so.
			slog.Debug("waiting for an auth helper", "pid", pid, "err", err)
		}
	}()
	deadline := time.Now().Add(timeout)
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	err = talk(c)
	timedOut := false
	if err != nil {
		// No answer: nothing to wait for.
		timedOut = time.Now().After(deadline)
		kill(pid)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		timedOut = true
		kill(pid)
	case <-ctx.Done():
		kill(pid)
	}
	<-exited
	werr := cmd.Wait()
	switch {
	case timedOut:
		return fmt.Errorf("%w (after %s)", ErrTimeout, timeout)
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil && werr != nil:
		return fmt.Errorf("helper %s: %w (exit: %v)", cmd.Path, err, werr)
	case err != nil:
		return fmt.Errorf("helper %s: %w", cmd.Path, err)
	case werr != nil:
		// It answered but did not exit cleanly: do not trust the answer.
		return fmt.Errorf("helper %s answered but then failed: %w", cmd.Path, werr)
	}
	return nil
}
