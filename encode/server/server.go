// SPDX-License-Identifier: GPL-2.0-or-later

// Package server is the encoder worker's side of encproto: it accepts
// session workers on a unix socket, checks who they are from the
// kernel's peer credentials before reading a byte, and serves their
// encoding contexts from the pool (NVENC on a GPU, else x264 / JPEG).
//
// Contexts belong to the connection that opened them: a context id is
// only looked up among its own connection's contexts, and every context
// is closed, and its pool slot released, when the connection ends.
package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/listen"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/encode/x264"
)

// Config bounds what clients may ask for.
type Config struct {
	// MaxWidth and MaxHeight of a context (default 4096 each).
	MaxWidth, MaxHeight int
	// MaxConns in total (default 256) and per uid (default 16).
	MaxConns, MaxConnsPerUID int
	// Limits counts connections against MaxConns and MaxConnsPerUID
	// (nil: a Limiter of this server's own). Give another front end of
	// the pool (encode/xpraenc) the same one, read back from Config, and
	// the limits bound both sockets together.
	Limits *listen.Limiter
	// MaxContextsPerConn bounds one connection (default 64); the pool's
	// MaxPerUser bounds a user across connections.
	MaxContextsPerConn int
	// AllowUID says who may connect (nil: everyone but root, whose
	// processes have no business sending frames here).
	AllowUID func(uid uint32) bool
	// StatsUID says who else may connect to ask for Stats alone (nil:
	// no one): the metrics process, which has no business sending
	// frames either. Such a peer gets Hello and Stats answered; any
	// other request is refused and the connection closed.
	StatsUID func(uid uint32) bool
	// Counters count frames for Stats (nil: a Counters of this server's
	// own). Given to encode/xpraenc as Limits is, they count both front
	// ends.
	Counters *Counters
	// Threads per x264 context (0: x264 chooses).
	Threads int
	// WriteTimeout bounds sending one reply to a client that does not
	// read (default 10 s); BodyTimeout bounds the rest of a message once
	// its header came (default 10 s).
	WriteTimeout, BodyTimeout time.Duration
}

// Defaults fills in the zero fields; New calls it, and so does the other
// front end of the pool (encode/xpraenc), whose Config holds this one.
func (c *Config) Defaults() {
	if c.MaxWidth == 0 {
		c.MaxWidth = 4096
	}
	if c.MaxHeight == 0 {
		c.MaxHeight = 4096
	}
	c.MaxWidth = min(c.MaxWidth, codec.MaxDimension)
	c.MaxHeight = min(c.MaxHeight, codec.MaxDimension)
	if c.MaxConns == 0 {
		c.MaxConns = 256
	}
	if c.MaxConnsPerUID == 0 {
		c.MaxConnsPerUID = 16
	}
	if c.MaxContextsPerConn == 0 {
		c.MaxContextsPerConn = 64
	}
	if c.AllowUID == nil {
		c.AllowUID = func(uid uint32) bool { return uid != 0 }
	}
	if c.Limits == nil {
		c.Limits = listen.NewLimiter(c.MaxConns, c.MaxConnsPerUID)
	}
	if c.StatsUID == nil {
		c.StatsUID = func(uint32) bool { return false }
	}
	if c.Counters == nil {
		c.Counters = NewCounters()
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 10 * time.Second
	}
}

// Server serves one listener.
type Server struct {
	cfg  Config
	pool *pool.Pool
	log  *slog.Logger

	ln *listen.Listener

	mu       sync.Mutex
	contexts int
}

// New makes a server on p. When NVML found GPUs but the NVENC driver
// cannot be loaded, the pool is told to use the CPU only.
func New(cfg Config, p *pool.Pool, log *slog.Logger) *Server {
	cfg.Defaults()
	if log == nil {
		log = slog.Default()
	}
	CheckGPU(p)
	s := &Server{cfg: cfg, pool: p, log: log}
	allow := func(uid uint32) bool { return cfg.AllowUID(uid) || cfg.StatsUID(uid) }
	s.ln = &listen.Listener{Name: "encoder", Allow: allow, Limits: cfg.Limits, Handle: s.handle, Log: log}
	return s
}

// Serve accepts connections until Close.
func (s *Server) Serve(ln *net.UnixListener) error { return s.ln.Serve(ln) }

// Close stops accepting, drops every connection (closing its contexts)
// and waits for the handlers.
func (s *Server) Close() error { return s.ln.Close() }

type conn struct {
	s    *Server
	nc   *net.UnixConn
	c    *encproto.Conn
	uid  uint32
	log  *slog.Logger
	ctxs map[uint32]*encCtx
	next uint32
	// statsOnly: admitted by StatsUID alone.
	statsOnly bool
}

// handle serves an admitted connection; a refused one is closed
// unanswered (an encproto client reads nothing before its hello).
func (s *Server) handle(uc *net.UnixConn, p listen.Peer) {
	ec := encproto.NewConn(uc)
	ec.BodyTimeout = s.cfg.BodyTimeout
	c := &conn{s: s, nc: uc, c: ec, uid: p.UID, ctxs: map[uint32]*encCtx{}, log: p.Log, statsOnly: !s.cfg.AllowUID(p.UID)}
	defer c.closeAll()
	c.log.Debug("encoder: client connected")
	if err := c.serve(); err != nil {
		c.log.Info("encoder: client dropped", "err", err)
	}
}

func (c *conn) serve() error {
	for {
		h, body, fd, err := c.c.Read(encproto.MaxRequestBody)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, encproto.ErrProtocol) {
				c.reply(0, &encproto.Error{Code: encproto.BadRequest, Message: err.Error()}, nil)
			}
			return err
		}
		req, err := encproto.ParseRequest(h, body)
		if err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			c.reply(h.Seq, &encproto.Error{Code: encproto.BadRequest, Message: err.Error()}, nil)
			return err
		}
		if c.statsOnly {
			switch req.(type) {
			case encproto.Hello, encproto.StatsRequest:
			default:
				if fd >= 0 {
					unix.Close(fd)
				}
				err := fmt.Errorf("%v from a peer admitted for stats only", h.Type)
				c.reply(h.Seq, &encproto.Error{Code: encproto.Refused, Message: err.Error()}, nil)
				return err
			}
		}
		var rep encproto.Reply
		var tail []byte
		switch r := req.(type) {
		case encproto.Hello:
			if r.Version != encproto.Version {
				err := fmt.Errorf("protocol version %d, this worker speaks %d", r.Version, encproto.Version)
				c.reply(h.Seq, &encproto.Error{Code: encproto.BadRequest, Message: err.Error()}, nil)
				return err
			}
			rep = c.s.hello()
		case encproto.Open:
			rep = c.open(r)
		case encproto.Compress:
			end := c.s.cfg.Counters.Begin()
			var backend encproto.Backend
			if x, ok := c.ctxs[r.Ctx]; ok {
				backend = x.backend
			}
			rep, tail = c.compress(r, fd)
			end()
			c.s.cfg.Counters.Frame(backend, frameResult(rep))
		case encproto.Close:
			rep = c.closeCtx(r.Ctx)
		case encproto.Status:
			b, _ := json.Marshal(c.s.Status())
			rep = encproto.StatusReply{JSON: b}
		case encproto.StatsRequest:
			rep = c.s.Stats()
		}
		if err := c.reply(h.Seq, rep, tail); err != nil {
			return fmt.Errorf("sending %v reply: %w", h.Type, err)
		}
	}
}

func (c *conn) reply(seq uint32, rep encproto.Reply, tail []byte) error {
	body, typ, err := encproto.AppendReply(nil, rep)
	if err != nil {
		return err
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	return c.c.Write(typ, seq, body, tail, -1)
}

func (s *Server) hello() encproto.HelloReply {
	noGPU := s.pool.NoGPU()
	codecs := []codec.Codec{codec.H264, codec.JPEG}
	if noGPU == "" {
		codecs = append(codecs, codec.HEVC)
	}
	return encproto.HelloReply{Version: encproto.Version, Codecs: codecs,
		MaxWidth: uint16(s.cfg.MaxWidth), MaxHeight: uint16(s.cfg.MaxHeight), Note: noGPU}
}

// Status is what a Status request returns, as JSON.
type Status struct {
	Pool     pool.Status `json:"pool"`
	Conns    int         `json:"conns"`
	Contexts int         `json:"contexts"`
}

// Status reads the pool and counts.
func (s *Server) Status() Status {
	st := Status{Pool: s.pool.Status()}
	s.mu.Lock()
	st.Conns, st.Contexts = s.ln.Conns(), s.contexts
	s.mu.Unlock()
	return st
}

// Stats is the worker's counters now (encproto Stats): connections on
// every front end sharing Limits, contexts from the pool.
func (s *Server) Stats() encproto.StatsReply {
	return s.cfg.Counters.Stats(s.cfg.Limits.Conns(), s.pool.Contexts())
}

func errReply(code encproto.ErrorCode, format string, a ...any) *encproto.Error {
	return &encproto.Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

func (c *conn) open(r encproto.Open) encproto.Reply {
	if len(c.ctxs) >= c.s.cfg.MaxContextsPerConn {
		return errReply(encproto.Refused, "%d contexts on this connection, the limit", len(c.ctxs))
	}
	if int(r.Width) > c.s.cfg.MaxWidth || int(r.Height) > c.s.cfg.MaxHeight {
		return errReply(encproto.Invalid, "%dx%d exceeds %dx%d", r.Width, r.Height, c.s.cfg.MaxWidth, c.s.cfg.MaxHeight)
	}
	cfg := codec.Config{Codec: r.Codec, Format: r.Format, Width: int(r.Width), Height: int(r.Height),
		Quality: int(r.Quality), Speed: int(r.Speed), Threads: c.s.cfg.Threads}
	if err := cfg.Validate(); err != nil {
		return errReply(encproto.Invalid, "%v", err)
	}
	if r.Profile != "" && (r.Codec != codec.H264 || !validProfile(r.Profile)) {
		return errReply(encproto.Invalid, "profile %q for %v", r.Profile, r.Codec)
	}
	oc, rerr := OpenContext(c.s.pool, c.uid, cfg, r.Profile, r.CPUOnly, c.log)
	if rerr != nil {
		if rerr.Code == encproto.Refused {
			c.s.cfg.Counters.OpenRefused()
		}
		return rerr
	}
	c.next++
	id := c.next
	c.ctxs[id] = &encCtx{cfg: cfg, enc: oc.Enc, lease: oc.Lease, backend: oc.Backend}
	c.s.mu.Lock()
	c.s.contexts++
	c.s.mu.Unlock()
	c.log.Debug("encoder: context", "ctx", id, "codec", r.Codec, "size", fmt.Sprintf("%dx%d", r.Width, r.Height),
		"backend", oc.Backend, "fallback", oc.Lease.Fallback)
	return encproto.Opened{Ctx: id, Backend: oc.Backend, GPU: oc.GPU, Fallback: oc.Lease.Fallback}
}

func validProfile(p string) bool {
	for _, v := range x264.Profiles {
		if v == p {
			return true
		}
	}
	return false
}

func refusal(err error) string {
	var re *pool.RefusedError
	if errors.As(err, &re) {
		return re.Reason
	}
	return err.Error()
}

func (c *conn) closeCtx(id uint32) encproto.Reply {
	ctx, ok := c.ctxs[id]
	if !ok {
		return errReply(encproto.NoContext, "no context %d", id)
	}
	delete(c.ctxs, id)
	ctx.close()
	c.s.mu.Lock()
	c.s.contexts--
	c.s.mu.Unlock()
	return encproto.Closed{}
}

func (c *conn) closeAll() {
	for id := range c.ctxs {
		c.closeCtx(id)
	}
}

// encCtx is one client context and its cached frame mapping.
type encCtx struct {
	cfg     codec.Config
	enc     codec.Encoder
	lease   *pool.Lease
	backend encproto.Backend
	m       mapping
}

func (x *encCtx) close() {
	x.enc.Close()
	x.lease.Release()
	x.m.unmap()
}

// mapping is a read-only view of a client's memfd, kept while the client
// keeps sending the same one (the usual case: one buffer per window), so
// a frame costs no mmap and no page faults after the first.
type mapping struct {
	dev, ino uint64
	off      int64 // file offset of data[0]
	data     []byte
}

func (m *mapping) unmap() {
	if m.data != nil {
		unix.Munmap(m.data)
		*m = mapping{}
	}
}

var pageSize = int64(os.Getpagesize())

// frame checks the client's memfd and returns the frame's bytes from a
// (possibly cached) mapping. The descriptor is closed on every path.
func (x *encCtx) frame(fd int, offset uint64, stride int) ([]byte, error) {
	defer unix.Close(fd)
	if err := x.cfg.CheckStride(stride); err != nil {
		return nil, err
	}
	if offset > 1<<40 {
		return nil, fmt.Errorf("offset %d", offset)
	}
	need := int64(offset) + int64(x.cfg.FrameBytes(stride))
	// Seals first: once F_SEAL_SHRINK is set the size read next can only
	// grow, so the mapping can never fault (a shrunk file would SIGBUS
	// the whole worker). Only memfds (shmem) have seals: anything else,
	// a file a client names or a socket, is refused here.
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("not a memfd: %v", err)
	}
	if seals&unix.F_SEAL_SHRINK == 0 {
		return nil, fmt.Errorf("memfd not sealed against shrinking (F_SEAL_SHRINK)")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("fstat: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("not a regular memfd")
	}
	if st.Size < need {
		return nil, fmt.Errorf("memfd of %d bytes, the frame needs %d", st.Size, need)
	}
	m := &x.m
	if m.data == nil || m.dev != st.Dev || m.ino != st.Ino || int64(offset) < m.off || need > m.off+int64(len(m.data)) {
		m.unmap()
		start := int64(offset) &^ (pageSize - 1)
		data, err := unix.Mmap(fd, start, int(need-start), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("mmap: %v", err)
		}
		*m = mapping{dev: st.Dev, ino: st.Ino, off: start, data: data}
	}
	return m.data[int64(offset)-m.off : need-m.off], nil
}

func (c *conn) compress(r encproto.Compress, fd int) (encproto.Reply, []byte) {
	x, ok := c.ctxs[r.Ctx]
	if !ok {
		unix.Close(fd)
		return errReply(encproto.NoContext, "no context %d", r.Ctx), nil
	}
	pix, err := x.frame(fd, r.Offset, int(r.Stride))
	if err != nil {
		return errReply(encproto.BadFrame, "%v", err), nil
	}
	f, err := x.enc.Encode(pix, int(r.Stride), codec.FrameOptions{Keyframe: r.Keyframe, Quality: int(r.Quality), Speed: int(r.Speed)})
	if err != nil {
		return errReply(encproto.EncodeFailed, "%v", err), nil
	}
	if len(f.Data) > encproto.MaxReplyBody-1 {
		return errReply(encproto.EncodeFailed, "bitstream of %d bytes", len(f.Data)), nil
	}
	// f.Data is the backend's buffer, written to the socket as is.
	return encproto.Compressed{Keyframe: f.Keyframe}, f.Data
}
