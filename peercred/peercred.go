// SPDX-License-Identifier: GPL-2.0-or-later

// Package peercred reads who is at the other end of a unix socket, from
// the kernel (SO_PEERCRED): the one check every local socket of ours
// makes before it reads a byte (control sockets, the encoder's sockets
// and its clients).
package peercred

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Of returns the credentials the kernel recorded for c's peer when the
// connection was made (connect or listen). c must be a unix socket.
func Of(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("peercred: a %T has no peer credentials", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peercred: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peercred: %w", err)
	}
	if cerr != nil {
		return nil, fmt.Errorf("peercred: SO_PEERCRED: %w", cerr)
	}
	return cred, nil
}
