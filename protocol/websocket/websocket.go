// SPDX-License-Identifier: GPL-2.0-or-later

// Package websocket carries the xpra chunk stream inside WebSocket frames
// (PROTOCOL.md §7.4). The frame and handshake codecs are
// github.com/gobwas/ws, chosen because it works at the frame level: xpra's
// own peers send *unmasked* frames in both directions and a 3.1 server
// frames each chunk separately, quirks a message-level library hides or
// rejects. What is xpra-specific lives here: the "binary" subprotocol, a
// byte-stream view across frames, tolerance of unmasked client frames,
// ping/pong and close handling, and size limits.
package websocket

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// Subprotocol is the only one xpra speaks.
const Subprotocol = "binary"

// maxControl is RFC 6455's limit on control frame payloads.
const maxControl = 125

// Conn is a websocket connection seen as the byte stream inside its data
// frames. Each Write becomes one binary frame.
type Conn struct {
	nc       net.Conn
	r        io.Reader
	mask     bool // we are the client: mask what we write (RFC 6455; xpra accepts it)
	maxFrame int64
	newMask  func() [4]byte

	// read state: the data frame being read
	remaining int64
	masked    bool
	key       [4]byte
	offset    int
	closed    bool
	hdrBuf    []byte
	ctrl      [maxControl]byte

	wmu       sync.Mutex
	wbuf      []byte // frame being written, reused: one copy per frame, no allocation
	closeSent bool   // a close frame went out: nothing may follow it (RFC 6455 §5.5.1)
}

// DefaultMaxFrame bounds one frame's payload: xpra never sends frames
// larger than its largest chunk.
const DefaultMaxFrame = 256 << 20

// NewConn wraps an upgraded connection. br holds bytes read past the
// handshake (may be nil). client says whether we masked the handshake side.
func NewConn(nc net.Conn, br *bufio.Reader, client bool) *Conn {
	c := &Conn{nc: nc, r: nc, mask: client, maxFrame: DefaultMaxFrame, newMask: ws.NewMask,
		hdrBuf: make([]byte, 2, ws.MaxHeaderSize)}
	if br != nil && br.Buffered() > 0 {
		c.r = io.MultiReader(br, nc)
	}
	return c
}

// SetMaxFrame changes the largest frame payload accepted.
func (c *Conn) SetMaxFrame(n int64) { c.maxFrame = n }

// Dial performs the client handshake on an established connection.
func Dial(ctx context.Context, nc net.Conn, host, path string) (*Conn, error) {
	if path == "" {
		path = "/"
	}
	u := &url.URL{Scheme: "ws", Host: host, Path: path}
	d := ws.Dialer{Protocols: []string{Subprotocol}}
	if dl, ok := ctx.Deadline(); ok {
		if err := nc.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("websocket: %w", err)
		}
		defer nc.SetDeadline(time.Time{})
	}
	br, hs, err := d.Upgrade(nc, u)
	if err != nil {
		return nil, fmt.Errorf("websocket: handshake with %s: %w", host, err)
	}
	if hs.Protocol != Subprotocol {
		return nil, fmt.Errorf("websocket: server chose subprotocol %q, want %q", hs.Protocol, Subprotocol)
	}
	c := NewConn(nc, br, true)
	return c, nil
}

// ErrProtocol reports a malformed frame sequence.
var ErrProtocol = errors.New("websocket: protocol error")

// Read returns payload bytes of data frames, across frame boundaries,
// which xpra's parser ignores. Pings are answered; a close frame ends the
// stream with io.EOF after it is echoed.
func (c *Conn) Read(p []byte) (int, error) {
	for c.remaining == 0 {
		if c.closed {
			return 0, io.EOF
		}
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.r.Read(p)
	if c.masked {
		ws.Cipher(p[:n], c.key, c.offset)
	}
	c.offset += n
	c.remaining -= int64(n)
	if err == io.EOF && c.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *Conn) nextFrame() error {
	h, err := ws.ReadHeaderBuffer(c.r, c.hdrBuf)
	if err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return fmt.Errorf("websocket: reading frame header: %w", err)
	}
	if h.Rsv != 0 {
		return fmt.Errorf("%w: reserved bits %#x set (no extension was negotiated)", ErrProtocol, h.Rsv)
	}
	if h.Length < 0 || h.Length > c.maxFrame {
		return fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrProtocol, h.Length, c.maxFrame)
	}
	switch h.OpCode {
	case ws.OpBinary, ws.OpText, ws.OpContinuation:
		// xpra treats text frames as binary and concatenates continuations.
		c.remaining, c.masked, c.key, c.offset = h.Length, h.Masked, h.Mask, 0
		return nil
	case ws.OpPing, ws.OpPong, ws.OpClose:
	default:
		return fmt.Errorf("%w: unknown opcode %d", ErrProtocol, h.OpCode)
	}
	if !h.Fin || h.Length > maxControl {
		return fmt.Errorf("%w: fragmented or oversized control frame", ErrProtocol)
	}
	body := c.ctrl[:h.Length]
	if _, err := io.ReadFull(c.r, body); err != nil {
		return fmt.Errorf("websocket: reading control frame: %w", err)
	}
	if h.Masked {
		ws.Cipher(body, h.Mask, 0)
	}
	switch h.OpCode {
	case ws.OpPing:
		return c.writeFrame(ws.OpPong, body)
	case ws.OpClose:
		c.closed = true
		code, _ := ws.ParseCloseFrameData(body)
		// Echo the close (unless ours went first); the peer may already
		// be gone, which changes nothing.
		_ = c.sendClose(code)
	}
	return nil
}

// CloseWrite sends a close frame (1000, normal closure) unless one has
// gone out already, ours or the echo of the peer's. The connection under
// it stays open: transport.CloseWrite walks on to it (NetConn).
func (c *Conn) CloseWrite() error {
	return c.sendClose(ws.StatusNormalClosure)
}

func (c *Conn) sendClose(code ws.StatusCode) error {
	c.wmu.Lock()
	if c.closeSent {
		c.wmu.Unlock()
		return nil
	}
	c.closeSent = true
	c.wmu.Unlock()
	return c.writeFrame(ws.OpClose, ws.NewCloseFrameBody(code, ""))
}

// NetConn returns the connection the frames travel on.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Write sends p as one binary frame.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.writeFrame(ws.OpBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *Conn) writeFrame(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	if c.mask {
		h.Masked, h.Mask = true, c.newMask()
	}
	// Header and payload go out in one write (one TLS record under wss).
	buf := c.wbuf[:0]
	if err := ws.WriteHeader(bytesWriter{&buf}, h); err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	n := len(buf)
	buf = append(buf, p...)
	if c.mask {
		ws.Cipher(buf[n:], h.Mask, 0)
	}
	_, err := c.nc.Write(buf)
	if cap(buf) <= maxKeptWriteBuffer {
		c.wbuf = buf[:0]
	}
	if err != nil {
		return fmt.Errorf("websocket: writing frame: %w", err)
	}
	return nil
}

// maxKeptWriteBuffer bounds the write buffer a connection keeps between
// frames: a rare huge frame does not pin its size for the connection's life.
const maxKeptWriteBuffer = 1 << 20

type bytesWriter struct{ b *[]byte }

func (w bytesWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

// net.Conn plumbing.
func (c *Conn) Close() error                       { return c.nc.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }
