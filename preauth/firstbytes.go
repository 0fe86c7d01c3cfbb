// SPDX-License-Identifier: GPL-2.0-or-later

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
	err = rc.Read(func(fd uintptr) bool {
		// A peek (the seccomp filter allows recvfrom, not poll): nothing
		// yet waits for the poller (false), until the deadline; bytes, a
		// hang-up or an error (a reset) go to the next stage, whose read
		// finds out.
		var b [1]byte
		_, _, e := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return e != unix.EAGAIN
	})
	_ = nc.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("first bytes: %w", err)
	}
	return nil
}
