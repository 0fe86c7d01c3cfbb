// Package websocket carries the xpra chunk stream inside WebSocket frames
// (PROTOCOL.md §7.4), with its own frame codec and client handshake (RFC
// 6455), because what xpra needs is at the frame level: xpra's own peers
// send *unmasked* frames in both directions and a 3.1 server frames each
// chunk separately, quirks a message-level library hides or rejects. It
// holds the "binary" subprotocol, a byte-stream view across frames,
// tolerance of unmasked client frames, ping/pong and close handling, and
// size limits. It imports no HTTP or TLS code: relay workers dial ws://
// targets with it, and stay small (BENCHMARKS.md). The server's side of
// the handshake is package transport's.
package websocket

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
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
	hdrBuf    [maxHeaderSize]byte
	ctrl      [maxControl]byte

	wmu  sync.Mutex
	wbuf []byte // frame being written, reused: one copy per frame, no allocation
}

// DefaultMaxFrame bounds one frame's payload: xpra never sends frames
// larger than its largest chunk.
const DefaultMaxFrame = 256 << 20

// NewConn wraps an upgraded connection. br holds bytes read past the
// handshake (may be nil). client says whether we masked the handshake side.
func NewConn(nc net.Conn, br *bufio.Reader, client bool) *Conn {
	c := &Conn{nc: nc, r: nc, mask: client, maxFrame: DefaultMaxFrame, newMask: newMask}
	if br != nil && br.Buffered() > 0 {
		c.r = io.MultiReader(br, nc)
	}
	return c
}

// SetMaxFrame changes the largest frame payload accepted.
func (c *Conn) SetMaxFrame(n int64) { c.maxFrame = n }

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
		cipher(p[:n], c.key, c.offset)
	}
	c.offset += n
	c.remaining -= int64(n)
	if err == io.EOF && c.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *Conn) nextFrame() error {
	h, err := readHeader(c.r, c.hdrBuf[:])
	if err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return fmt.Errorf("websocket: reading frame header: %w", err)
	}
	if h.rsv != 0 {
		return fmt.Errorf("%w: reserved bits %#x set (no extension was negotiated)", ErrProtocol, h.rsv)
	}
	if h.length > c.maxFrame {
		return fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrProtocol, h.length, c.maxFrame)
	}
	switch h.op {
	case opBinary, opText, opContinuation:
		// xpra treats text frames as binary and concatenates continuations.
		c.remaining, c.masked, c.key, c.offset = h.length, h.masked, h.mask, 0
		return nil
	case opPing, opPong, opClose:
	default:
		return fmt.Errorf("%w: unknown opcode %d", ErrProtocol, h.op)
	}
	if !h.fin || h.length > maxControl {
		return fmt.Errorf("%w: fragmented or oversized control frame", ErrProtocol)
	}
	body := c.ctrl[:h.length]
	if _, err := io.ReadFull(c.r, body); err != nil {
		return fmt.Errorf("websocket: reading control frame: %w", err)
	}
	if h.masked {
		cipher(body, h.mask, 0)
	}
	switch h.op {
	case opPing:
		return c.writeFrame(opPong, body)
	case opClose:
		c.closed = true
		// Echo the close with its code; the peer may already be gone,
		// which changes nothing.
		var echo [2]byte
		binary.BigEndian.PutUint16(echo[:], closeCode(body))
		_ = c.writeFrame(opClose, echo[:])
	}
	return nil
}

// Write sends p as one binary frame.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.writeFrame(opBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *Conn) writeFrame(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var key [4]byte
	if c.mask {
		key = c.newMask()
	}
	// Header and payload go out in one write (one TLS record under wss).
	buf := appendHeader(c.wbuf[:0], op, len(p), c.mask, key)
	n := len(buf)
	buf = append(buf, p...)
	if c.mask {
		cipher(buf[n:], key, 0)
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

// net.Conn plumbing.
func (c *Conn) Close() error                       { return c.nc.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }
