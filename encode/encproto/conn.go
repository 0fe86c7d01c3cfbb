// SPDX-License-Identifier: GPL-2.0-or-later

package encproto

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// maxFdsPerRead is the room for descriptors in one recvmsg: more than a
// message may carry, so an excess is seen and refused rather than
// truncated by the kernel (which would close them unseen, fine, but
// hide the misbehaviour).
const maxFdsPerRead = 4

// Conn reads and writes whole messages with their descriptors. It takes
// one reader and one writer at a time (each reuses its own buffer).
type Conn struct {
	// BodyTimeout, when set, bounds reading the rest of a message once
	// its header came (the server's guard against a peer that stalls
	// mid-message; waiting for the next header is not bounded).
	BodyTimeout time.Duration

	c    *net.UnixConn
	hdr  [HeaderSize]byte
	oob  []byte
	fds  []int // received with the message being read
	body []byte
	wbuf []byte
}

// NewConn wraps a connected unix stream socket.
func NewConn(c *net.UnixConn) *Conn {
	return &Conn{c: c, oob: make([]byte, unix.CmsgSpace(maxFdsPerRead*4))}
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Unix is the underlying socket (for credentials and deadlines).
func (c *Conn) Unix() *net.UnixConn { return c.c }

// SetReadDeadline bounds the next reads.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// SetWriteDeadline bounds the next writes.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

func (c *Conn) closeFds() {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = c.fds[:0]
}

// readFull fills b, collecting every descriptor that arrives meanwhile.
func (c *Conn) readFull(b []byte) error {
	for got := 0; got < len(b); {
		n, oobn, flags, _, err := c.c.ReadMsgUnix(b[got:], c.oob)
		if oobn > 0 {
			if perr := c.takeFds(c.oob[:oobn]); perr != nil {
				return perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return protoErr("control data truncated (too many descriptors)")
		}
		got += n
		if err != nil {
			if errors.Is(err, io.EOF) && got > 0 {
				return fmt.Errorf("%w: connection closed mid-message", io.ErrUnexpectedEOF)
			}
			return err
		}
		if n == 0 {
			if got == 0 {
				return io.EOF
			}
			return fmt.Errorf("%w: connection closed mid-message", io.ErrUnexpectedEOF)
		}
	}
	return nil
}

func (c *Conn) takeFds(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return protoErr("control data: %v", err)
	}
	var bad error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			bad = protoErr("unexpected control message %d/%d", m.Header.Level, m.Header.Type)
			continue
		}
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = protoErr("rights: %v", err)
			continue
		}
		c.fds = append(c.fds, fds...)
	}
	if len(c.fds) > 1 {
		bad = protoErr("%d descriptors on one message", len(c.fds))
	}
	return bad
}

// Read reads one message. The body is only valid until the next Read; fd
// is the descriptor that came with it (the caller closes it) or -1. Any
// error leaves no descriptor open; errors wrapping ErrProtocol mean the
// peer misbehaved.
func (c *Conn) Read(maxBody uint32) (Header, []byte, int, error) {
	c.closeFds()
	fail := func(err error) (Header, []byte, int, error) {
		c.closeFds()
		return Header{}, nil, -1, err
	}
	if err := c.readFull(c.hdr[:]); err != nil {
		return fail(err)
	}
	h, err := ParseHeader(c.hdr[:])
	if err != nil {
		return fail(err)
	}
	if h.Len > maxBody {
		return fail(protoErr("%v body of %d bytes exceeds %d", h.Type, h.Len, maxBody))
	}
	if c.BodyTimeout > 0 {
		c.c.SetReadDeadline(time.Now().Add(c.BodyTimeout))
		defer c.c.SetReadDeadline(time.Time{})
	}
	if cap(c.body) < int(h.Len) {
		c.body = make([]byte, h.Len)
	}
	body := c.body[:h.Len]
	if err := c.readFull(body); err != nil {
		return fail(err)
	}
	if len(c.fds) != int(h.Fds) {
		return fail(protoErr("%v came with %d descriptors, header says %d", h.Type, len(c.fds), h.Fds))
	}
	fd := -1
	if len(c.fds) == 1 {
		fd = c.fds[0]
		c.fds = c.fds[:0]
	}
	return h, body, fd, nil
}

// Write sends one message: header, body and tail (written without being
// copied), with fd attached when fd >= 0.
func (c *Conn) Write(t Type, seq uint32, body, tail []byte, fd int) error {
	h := Header{Type: t, Seq: seq, Len: uint32(len(body) + len(tail))}
	if fd >= 0 {
		h.Fds = 1
	}
	c.wbuf = AppendHeader(c.wbuf[:0], h)
	c.wbuf = append(c.wbuf, body...)
	if fd < 0 {
		bufs := net.Buffers{c.wbuf, tail}
		_, err := bufs.WriteTo(c.c)
		return err
	}
	// The descriptor rides on the first byte; a short write (full socket
	// buffer) sends the rest without it.
	n, _, err := c.c.WriteMsgUnix(c.wbuf, unix.UnixRights(fd), nil)
	if err != nil {
		return err
	}
	bufs := net.Buffers{c.wbuf[n:], tail}
	_, err = bufs.WriteTo(c.c)
	return err
}
