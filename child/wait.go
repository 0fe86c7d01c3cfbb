// SPDX-License-Identifier: GPL-2.0-or-later

package child

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// Exited blocks until the process has exited, without reaping it. It
// waits in Go's network poller on a pidfd, so a waiting goroutine holds
// no OS thread: with a blocking wait per child (os/exec's Wait is a
// waitid in a syscall), 1,000 relays cost the supervisor 1,000 threads,
// and threads never go back once made. Where pidfds cannot be polled
// (Linux before 5.10), it falls back to a blocking waitid(WNOWAIT).
func Exited(p *os.Process) error {
	fd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return waitNoReap(p.Pid)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return waitNoReap(p.Pid)
	}
	polled := true
	err = rc.Read(func(fd uintptr) bool {
		// A pidfd is readable once its process has exited; Read calls
		// this again after each readiness event from the poller.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err != nil && !errors.Is(err, unix.EINTR) {
			polled = false
			return true
		}
		return n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
	})
	if err != nil || !polled {
		// Never return before the child has exited: callers time and
		// kill it by this.
		return waitNoReap(p.Pid)
	}
	return nil
}

func waitNoReap(pid int) error {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("child: waiting for %d: %w", pid, err)
		}
	}
}

// Wait is cmd.Wait that waits in the poller (Exited) and then reaps at
// once: the thread os/exec's Wait takes is held for microseconds, not
// for the child's life.
func Wait(cmd *exec.Cmd) error {
	if err := Exited(cmd.Process); err != nil {
		return err
	}
	return cmd.Wait()
}
