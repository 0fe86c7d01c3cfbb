// SPDX-License-Identifier: GPL-2.0-or-later

package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// pipeSize is how much of a chunk one pair of splice calls moves: the
// default maximum an unprivileged process may give a pipe
// (/proc/sys/fs/pipe-max-size), as Go's own io.Copy between sockets uses.
// A smaller pipe still works, with more calls.
const pipeSize = 1 << 20

// spliceFlags: SPLICE_F_NONBLOCK makes only the pipe side non-blocking;
// the sockets are non-blocking already and wait in Go's poller.
const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// streamSocket returns the raw descriptor access of a plain stream socket
// (TCP or a unix stream socket), nil for anything else: a websocket or TLS
// wrapper, an in-memory pipe, a unix datagram or seqpacket socket.
func streamSocket(c net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	typ, serr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	}); err != nil || serr != nil || typ != unix.SOCK_STREAM {
		return nil
	}
	return rc
}

// splicer moves bytes from one socket to another through a pipe, in the
// kernel: the bytes never enter the relay's memory. One per direction;
// the pipe is made on first use and kept.
type splicer struct {
	src, dst syscall.RawConn
	pr, pw   int // the pipe's read and write ends, -1 until made
	size     int // the pipe's capacity

	// The functions given to src.Read and dst.Write, made once (a
	// closure per call was garbage per chunk), and their arguments and
	// results.
	fillFn, drainFn func(fd uintptr) bool
	max, n          int // fill: at most max bytes in, n got; drain: n bytes still to go out
	wrote           *atomic.Int64
	err             error // the splice's own failure

	// Scratch for writeBatch's writev, guarded like the writes: by the
	// destination's write side.
	hdrs [(queueDepth + 1) * wire.HeaderSize]byte
	bufs [2 * (queueDepth + 1)][]byte
}

// newSplicer returns nil unless both connections are plain stream sockets.
func newSplicer(src, dst net.Conn) *splicer {
	s, d := streamSocket(src), streamSocket(dst)
	if s == nil || d == nil {
		return nil
	}
	sp := &splicer{src: s, dst: d, pr: -1, pw: -1}
	sp.fillFn, sp.drainFn = sp.fillOnce, sp.drainOnce
	return sp
}

func (s *splicer) pipe() error {
	if s.pr >= 0 {
		return nil
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("making a splice pipe: %w", err)
	}
	s.pr, s.pw = p[0], p[1]
	// Refused past the user's pipe quota (pipe-user-pages-soft): the
	// default size then serves, with more calls.
	size, err := unix.FcntlInt(uintptr(s.pw), unix.F_SETPIPE_SZ, pipeSize)
	if err != nil {
		if size, err = unix.FcntlInt(uintptr(s.pw), unix.F_GETPIPE_SZ, 0); err != nil {
			s.close()
			return fmt.Errorf("splice pipe size: %w", err)
		}
	}
	s.size = size
	return nil
}

// close releases the pipe; bytes left in it (a failed move) go with it.
func (s *splicer) close() {
	if s == nil || s.pr < 0 {
		return
	}
	_ = unix.Close(s.pr)
	_ = unix.Close(s.pw)
	s.pr, s.pw = -1, -1
}

// move moves exactly n bytes from src to dst, adding to read and wrote
// the bytes taken from src and given to dst as they go. srcErr is
// io.ErrUnexpectedEOF (wrapped) when src ends early; dstErr is set when
// dst fails. Deadlines and Close on either socket end a waiting move.
func (s *splicer) move(n int, read, wrote *atomic.Int64) (srcErr, dstErr error) {
	if err := s.pipe(); err != nil {
		return nil, err
	}
	moved := 0
	for moved < n {
		// The pipe is empty here, so EAGAIN means src has nothing yet.
		in, err := s.fill(min(n-moved, s.size))
		if err != nil {
			return fmt.Errorf("splicing from the socket: %w", err), nil
		}
		if in == 0 {
			return fmt.Errorf("stream ended after %d of %d bytes: %w", moved, n, io.ErrUnexpectedEOF), nil
		}
		read.Add(int64(in))
		if err := s.drain(in, wrote); err != nil {
			return nil, fmt.Errorf("splicing to the socket: %w", err)
		}
		moved += in
	}
	return nil, nil
}

// fill splices up to max bytes from src into the empty pipe; 0 is the end
// of src's stream.
func (s *splicer) fill(max int) (int, error) {
	s.max, s.n, s.err = max, 0, nil
	if err := s.src.Read(s.fillFn); err != nil {
		return 0, err
	}
	return s.n, s.err
}

func (s *splicer) fillOnce(fd uintptr) bool {
	for {
		m, e := unix.Splice(int(fd), nil, s.pw, nil, s.max, spliceFlags)
		if e == unix.EINTR {
			continue
		}
		s.n, s.err = int(m), e
		return e != unix.EAGAIN // false: wait until src is readable
	}
}

// errPipeEmpty: a splice out of the pipe moved nothing although the pipe
// held bytes; it cannot happen, and must not loop forever if it does.
var errPipeEmpty = errors.New("splice moved nothing out of a full pipe")

// drain splices the n bytes in the pipe to dst.
func (s *splicer) drain(n int, wrote *atomic.Int64) error {
	s.n, s.wrote, s.err = n, wrote, nil
	err := s.dst.Write(s.drainFn)
	s.wrote = nil
	if err != nil {
		return err
	}
	return s.err
}

func (s *splicer) drainOnce(fd uintptr) bool {
	for s.n > 0 {
		m, e := unix.Splice(s.pr, nil, int(fd), nil, s.n, spliceFlags)
		switch {
		case e == unix.EINTR:
			continue
		case m > 0:
			s.n -= int(m)
			s.wrote.Add(m)
			continue
		case e == unix.EAGAIN:
			return false // wait until dst is writable
		case e == nil:
			s.err = errPipeEmpty
		default:
			s.err = e
		}
		return true
	}
	return true
}
