// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// penaltyNote is the line an xpra client refused during its source's
// penalty is sent instead of a bare close: xpra clients (3.1 and 6.x)
// show a plain-text "disconnect: reason" line that comes before any
// packet (6.x: "Error: failed to connect" and the reason; 3.1 prints the
// line). Kept under 128 printable bytes, 3.1's limit for showing it.
func penaltyNote(until, now time.Time) string {
	secs := int(math.Ceil(until.Sub(now).Seconds()))
	return fmt.Sprintf("disconnect: too many failed logins from your address, wait %d s and try again\n", max(secs, 1))
}

// noteSlots bounds the refused connections being told at once: root
// never holds more than this many extra sockets for a flood of them.
const noteSlots = 32

// noteGrace is how long a told client has to read the line and hang up.
const noteGrace = 500 * time.Millisecond

// refuseWithNote tells a penalised xpra client why, where its protocol
// allows it, and reports whether it took c (then closes it itself).
// Only a plain xpra stream gets the line: the first byte, already there
// (TCP_DEFER_ACCEPT), is looked at, never parsed further; TLS and HTTP
// clients would read the line as garbage. The client's unread hello is
// read and dropped first, so that the close sends no reset that could
// destroy the line.
func (s *Supervisor) refuseWithNote(c net.Conn, err error) bool {
	var r *limits.Refusal
	if !errors.As(err, &r) || r.Reason != limits.ReasonPenalty {
		return false
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, rerr := sc.SyscallConn()
	if rerr != nil {
		return false
	}
	first := make([]byte, 1)
	n := 0
	_ = rc.Read(func(fd uintptr) bool {
		n, _, _ = syscall.Recvfrom(int(fd), first, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait: no first byte yet means a bare close
	})
	if n != 1 || first[0] != 'P' {
		return false
	}
	select {
	case s.notes <- struct{}{}:
	default:
		return false // a flood: bare closes
	}
	s.wg.Go(func() {
		defer func() { <-s.notes }()
		defer c.Close()
		drainNow(rc)
		_ = c.SetWriteDeadline(time.Now().Add(noteGrace))
		if _, err := io.WriteString(c, penaltyNote(r.Until, time.Now())); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = c.SetReadDeadline(time.Now().Add(noteGrace))
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	})
	return true
}

// drainNow reads and drops what the client has sent so far, without
// waiting.
func drainNow(rc syscall.RawConn) {
	buf := make([]byte, 64<<10)
	for range 16 {
		n := 0
		_ = rc.Read(func(fd uintptr) bool {
			n, _, _ = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			return true
		})
		if n <= 0 {
			return
		}
	}
}
