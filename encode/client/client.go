// SPDX-License-Identifier: GPL-2.0-or-later

// Package client is what a session worker links to use the shared
// encoder worker: a connection that reconnects by itself, contexts, and
// shared-memory frames. It has no cgo and no codec code.
//
// Every error means "send this frame as you would without the pool".
// Two of them also mean the context is gone and a new one must be opened
// later: ErrUnavailable (no worker, or it died, hung past the timeout or
// broke the protocol: the call failed at once or within Timeout, and the
// client reconnects in the background) and ErrContextLost (the context
// belonged to a connection that has since been replaced).
//
//	c := client.New("/run/xpra-proxy-encode/socket", client.Options{ServerUID: encUID})
//	defer c.Close()
//	f, _ := client.NewFrame(stride * h)      // read the server's pixels into f.Bytes()
//	ctx, info, err := c.Open(encproto.Open{Codec: codec.H264, Format: codec.BGRX, Width: w, Height: h, Quality: q, Speed: s})
//	data, key, err := ctx.AppendCompress(buf[:0], f, 0, stride, client.FrameOptions{Quality: -1, Speed: -1})
//	ctx.Close()
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/peercred"
)

// ErrUnavailable: no usable connection to the worker right now.
var ErrUnavailable = errors.New("encoder worker unavailable")

// ErrContextLost: the context died with an earlier connection.
var ErrContextLost = errors.New("encoder context lost with its connection")

// IsRefused reports whether err is the pool refusing a context (limits,
// no capacity), as opposed to the worker being unreachable.
func IsRefused(err error) bool {
	var e *encproto.Error
	return errors.As(err, &e) && e.Code == encproto.Refused
}

// Options tune a client.
type Options struct {
	// Timeout bounds one request, frame included (default 2 s). Past it
	// the connection is dropped: replies would come out of order.
	Timeout time.Duration
	// MinBackoff and MaxBackoff space reconnection attempts (default
	// 50 ms doubling up to 1 s).
	MinBackoff, MaxBackoff time.Duration
	// ServerUID, when >= 0, is the uid the worker must run as (checked
	// with SO_PEERCRED on every connection), so another local user
	// cannot stand in for it. -1 skips the check.
	ServerUID int
	Log       *slog.Logger
}

// Client is safe for concurrent use; requests are serialized.
type Client struct {
	path string
	opts Options

	// req serializes requests (and guards seq and wbuf); mu guards the
	// connection state and is never held across I/O, so Close, Connected
	// and the reconnection loop never wait for a frame being encoded.
	req  sync.Mutex
	seq  uint32
	wbuf []byte

	mu      sync.Mutex
	c       *encproto.Conn
	gen     uint64
	hello   encproto.HelloReply
	lastErr error
	closed  bool

	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	// up is closed and replaced each time a connection is made.
	up chan struct{}
}

// New makes a client for the worker's socket. It tries to connect once
// before returning (so it is usable at once when the worker is up) and
// keeps reconnecting in the background whenever it is not connected.
func New(path string, opts Options) *Client {
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	c := &Client{path: path, opts: opts, kick: make(chan struct{}, 1), done: make(chan struct{}),
		stopped: make(chan struct{}), up: make(chan struct{}), lastErr: errors.New("not connected yet")}
	c.tryConnect()
	go c.reconnectLoop()
	return c
}

// Close drops the connection (the worker frees its contexts) and stops
// reconnecting.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
	c.mu.Unlock()
	close(c.done)
	<-c.stopped
}

// Connected reports whether a connection is up, with what the worker
// said it serves.
func (c *Client) Connected() (encproto.HelloReply, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello, c.c != nil
}

// WaitConnected blocks until a connection is up or ctx ends.
func (c *Client) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		if c.c != nil {
			c.mu.Unlock()
			return nil
		}
		up := c.up
		last := c.lastErr
		c.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return fmt.Errorf("%w: %v (last: %v)", ErrUnavailable, ctx.Err(), last)
		}
	}
}

func (c *Client) reconnectLoop() {
	defer close(c.stopped)
	delay := c.opts.MinBackoff
	for {
		c.mu.Lock()
		connected := c.c != nil
		c.mu.Unlock()
		if connected {
			delay = c.opts.MinBackoff
			select {
			case <-c.done:
				return
			case <-c.kick:
			}
			continue
		}
		select {
		case <-c.done:
			return
		case <-time.After(delay):
		}
		if !c.tryConnect() {
			delay = min(delay*2, c.opts.MaxBackoff)
		}
	}
}

// tryConnect dials, checks the worker's uid and says hello.
func (c *Client) tryConnect() bool {
	conn, hello, err := c.dial()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.lastErr = err
		return false
	}
	if c.closed || c.c != nil {
		conn.Close()
		return c.c != nil
	}
	c.c, c.hello, c.lastErr = conn, hello, nil
	c.gen++
	close(c.up)
	c.up = make(chan struct{})
	c.opts.Log.Debug("encoder client: connected", "path", c.path, "codecs", hello.Codecs, "note", hello.Note)
	return true
}

func (c *Client) dial() (*encproto.Conn, encproto.HelloReply, error) {
	var hello encproto.HelloReply
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: c.path, Net: "unix"})
	if err != nil {
		return nil, hello, err
	}
	if c.opts.ServerUID >= 0 {
		cred, err := peercred.Of(uc)
		if err != nil {
			uc.Close()
			return nil, hello, err
		}
		if cred.Uid != uint32(c.opts.ServerUID) {
			uc.Close()
			return nil, hello, fmt.Errorf("%s is served by uid %d, not the encoder's %d", c.path, cred.Uid, c.opts.ServerUID)
		}
	}
	conn := encproto.NewConn(uc)
	conn.Unix().SetDeadline(time.Now().Add(c.opts.Timeout))
	body, typ, _ := encproto.AppendRequest(nil, encproto.Hello{Version: encproto.Version})
	rep, err := exchange(conn, typ, 0, body, -1)
	if err == nil {
		var ok bool
		if hello, ok = rep.(encproto.HelloReply); !ok {
			err = replyErr(rep)
		}
	}
	if err != nil {
		conn.Close()
		return nil, hello, fmt.Errorf("hello: %w", err)
	}
	conn.Unix().SetDeadline(time.Time{})
	return conn, hello, nil
}

func replyErr(rep encproto.Reply) error {
	if e, ok := rep.(*encproto.Error); ok {
		return e
	}
	return fmt.Errorf("%w: unexpected reply %T", encproto.ErrProtocol, rep)
}

// exchange writes one request and reads its reply.
func exchange(conn *encproto.Conn, typ encproto.Type, seq uint32, body []byte, fd int) (encproto.Reply, error) {
	if err := conn.Write(typ, seq, body, nil, fd); err != nil {
		return nil, err
	}
	h, rbody, rfd, err := conn.Read(encproto.MaxReplyBody)
	if err != nil {
		return nil, err
	}
	if rfd >= 0 {
		unix.Close(rfd)
	}
	if h.Seq != seq {
		return nil, fmt.Errorf("%w: reply %d to request %d", encproto.ErrProtocol, h.Seq, seq)
	}
	return encproto.ParseReply(h, rbody)
}

// breakConn drops conn after it failed, unless it was already replaced;
// contexts on it are lost.
func (c *Client) breakConn(conn *encproto.Conn, err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == conn {
		c.c.Close()
		c.c = nil
		c.lastErr = err
		c.opts.Log.Warn("encoder client: connection lost", "err", err)
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// roundTrip sends req on the connection of generation gen (0: any) and
// returns its reply; see the package comment for the errors. For
// Compressed replies, data is appended to dst before the next request
// can reuse the read buffer.
func (c *Client) roundTrip(gen uint64, req encproto.Request, fd int, dst []byte) (encproto.Reply, []byte, uint64, error) {
	c.req.Lock()
	defer c.req.Unlock()
	c.mu.Lock()
	conn, cur, closed, last := c.c, c.gen, c.closed, c.lastErr
	c.mu.Unlock()
	switch {
	case closed:
		return nil, dst, 0, fmt.Errorf("%w: client closed", ErrUnavailable)
	case conn == nil:
		return nil, dst, 0, fmt.Errorf("%w: %v", ErrUnavailable, last)
	case gen != 0 && gen != cur:
		return nil, dst, 0, ErrContextLost
	}
	body, typ, err := encproto.AppendRequest(c.wbuf[:0], req)
	if err != nil {
		return nil, dst, 0, err
	}
	c.wbuf = body
	c.seq++
	conn.Unix().SetDeadline(time.Now().Add(c.opts.Timeout))
	rep, err := exchange(conn, typ, c.seq, body, fd)
	if err != nil {
		return nil, dst, 0, c.breakConn(conn, err)
	}
	switch v := rep.(type) {
	case *encproto.Error:
		if v.Code == encproto.BadRequest {
			return nil, dst, 0, c.breakConn(conn, v)
		}
		return nil, dst, 0, v
	case encproto.Compressed:
		dst = append(dst, v.Data...)
	}
	return rep, dst, cur, nil
}

// Context is one encoding context in the worker.
type Context struct {
	c    *Client
	id   uint32
	gen  uint64
	Info encproto.Opened
}

// Open asks for a context. A refusal (IsRefused) carries the pool's
// reason; Info.Fallback says why an admitted video context is on the CPU.
func (c *Client) Open(req encproto.Open) (*Context, error) {
	rep, _, gen, err := c.roundTrip(0, req, -1, nil)
	if err != nil {
		return nil, err
	}
	o, ok := rep.(encproto.Opened)
	if !ok {
		return nil, replyErr(rep)
	}
	return &Context{c: c, id: o.Ctx, gen: gen, Info: o}, nil
}

// FrameOptions are per-frame requests; -1 keeps the context's quality
// or speed.
type FrameOptions struct {
	Keyframe       bool
	Quality, Speed int
}

// AppendCompress encodes the frame held in f at offset, rows stride bytes
// apart, and appends the bitstream to dst. The frame's memory is not
// copied: the worker maps it. f must not be written until this returns.
func (x *Context) AppendCompress(dst []byte, f *Frame, offset uint64, stride int, opts FrameOptions) ([]byte, bool, error) {
	if f.fd < 0 {
		return dst, false, fmt.Errorf("encoder client: frame closed")
	}
	q, s := clamp(opts.Quality), clamp(opts.Speed)
	req := encproto.Compress{Ctx: x.id, Stride: uint32(stride), Offset: offset, Keyframe: opts.Keyframe, Quality: q, Speed: s}
	rep, out, _, err := x.c.roundTrip(x.gen, req, f.fd, dst)
	if err != nil {
		return dst, false, err
	}
	v, ok := rep.(encproto.Compressed)
	if !ok {
		return dst, false, replyErr(rep)
	}
	return out, v.Keyframe, nil
}

func clamp(v int) int8 {
	if v < 0 || v > 100 {
		return -1
	}
	return int8(v)
}

// Close ends the context; on a lost connection there is nothing to do.
func (x *Context) Close() error {
	_, _, _, err := x.c.roundTrip(x.gen, encproto.Close{Ctx: x.id}, -1, nil)
	if errors.Is(err, ErrContextLost) || errors.Is(err, ErrUnavailable) {
		return nil
	}
	return err
}

// Status returns the worker's status document (encode/server.Status).
func (c *Client) Status() (json.RawMessage, error) {
	rep, _, _, err := c.roundTrip(0, encproto.Status{}, -1, nil)
	if err != nil {
		return nil, err
	}
	s, ok := rep.(encproto.StatusReply)
	if !ok {
		return nil, replyErr(rep)
	}
	return append(json.RawMessage(nil), s.JSON...), nil
}
