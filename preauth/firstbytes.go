package preauth

import (
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// AwaitFirstBytes waits until the client has sent something (or hung
// up), reading nothing, or deadline passes. It is the first-packet
// timeout's first half: a connection that only opened (the kernel
// accepts one anyway once TCP_DEFER_ACCEPT's time is over) holds this
// process that long, not the whole login time. The wait is the runtime's
// poller: no thread is parked for it.
func AwaitFirstBytes(nc net.Conn, deadline time.Time) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil // no socket under it: the hello's deadline applies
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("first bytes: %w", err)
	}
	if err := nc.SetReadDeadline(deadline); err != nil {
		return fmt.Errorf("first bytes: %w", err)
	}
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		// Readable, hung up or failed: the next stage reads and finds out.
		// Otherwise wait for the poller (false), until the deadline.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, e := unix.Poll(fds, 0)
		if e == unix.EINTR {
			return false
		}
		if e != nil {
			perr = e
			return true
		}
		return n > 0
	})
	_ = nc.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("first bytes: %w", err)
	}
	if perr != nil {
		return fmt.Errorf("first bytes: poll: %w", perr)
	}
	return nil
}
