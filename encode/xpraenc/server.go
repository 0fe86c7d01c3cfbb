// SPDX-License-Identifier: GPL-2.0-or-later

package xpraenc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/listen"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/encode/server"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Config bounds what callers may ask for: the encproto server's limits,
// with the same meanings and defaults (one Config serves both sockets),
// and the wait for the hello.
type Config struct {
	server.Config
	// HelloTimeout bounds the wait for the caller's hello (default 10 s).
	// BodyTimeout bounds the rest of a packet once its first chunk header
	// came (callers stay connected between frames, but send each packet
	// at once).
	HelloTimeout time.Duration
}

func (c *Config) defaults() {
	c.Config.Defaults()
	if c.HelloTimeout == 0 {
		c.HelloTimeout = 10 * time.Second
	}
}

// helloMax bounds the packets read before the hello is accepted.
const helloMax = 1 << 20

// packetMax is the largest packet (and decompressed chunk) accepted
// after the hello: one frame of the largest size with a generous
// rowstride, plus room for the rest of the packet.
func (c *Config) packetMax() int {
	return min((c.MaxWidth*4+4096)*c.MaxHeight+helloMax, wire.AbsMaxSize)
}

// Server serves the xpra encoder protocol on one listener.
type Server struct {
	cfg  Config
	pool *pool.Pool
	log  *slog.Logger

	ln *listen.Listener
}

// New makes a server on p, the pool the encproto server uses too.
func New(cfg Config, p *pool.Pool, log *slog.Logger) *Server {
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	server.CheckGPU(p)
	s := &Server{cfg: cfg, pool: p, log: log}
	s.ln = &listen.Listener{Name: "xpra encoder", Allow: cfg.AllowUID, Limits: cfg.Limits,
		Handle: s.handle, Refuse: s.refuse, Log: log}
	return s
}

// Serve accepts connections until Close.
func (s *Server) Serve(ln *net.UnixListener) error { return s.ln.Serve(ln) }

// Close stops accepting, drops every connection (closing its contexts)
// and waits for the handlers.
func (s *Server) Close() error { return s.ln.Close() }

// newConn frames packets on uc. A 6.x caller decodes rencodeplus only,
// even before its hello is answered: a refusal must be readable.
func newConn(uc *net.UnixConn) *conn.Conn {
	c := conn.New(uc)
	c.SetEncoding(wire.RencodePlus)
	return c
}

// disconnect tells the caller why it is dropped, briefly: the
// connection closes whether or not it reads.
func disconnect(uc *net.UnixConn, c *conn.Conn, reason, why string) {
	uc.SetWriteDeadline(time.Now().Add(time.Second))
	c.WritePacket(packet.NewDisconnect(reason, why))
}

// refuse answers a peer the listener turned away.
func (s *Server) refuse(uc *net.UnixConn, _ listen.Peer, r listen.Refusal, why string) {
	reason := packet.ReasonSessionBusy
	if r == listen.NotAllowed {
		reason = packet.ReasonPermissionError
	}
	disconnect(uc, newConn(uc), reason, why)
}

// handle serves one admitted connection to its end.
func (s *Server) handle(uc *net.UnixConn, peer listen.Peer) {
	c := newConn(uc)
	log := peer.Log
	ss := newSession(s, peer.UID, log, func(p conn.Packet) error {
		uc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		return c.WritePacket(p)
	})
	defer ss.closeAll()
	err := s.serve(uc, c, ss)
	var pe *protoError
	switch {
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, errClean):
		log.Debug("xpra encoder: caller gone")
	case errors.As(err, &pe):
		log.Warn("xpra encoder: dropping caller", "reason", pe.reason, "err", pe.msg)
		disconnect(uc, c, pe.reason, pe.msg)
	default:
		log.Info("xpra encoder: caller dropped", "err", err)
		disconnect(uc, c, packet.ReasonProtocolError, err.Error())
	}
}

// serve reads the hello, answers it and then handles packets in order.
func (s *Server) serve(uc *net.UnixConn, c *conn.Conn, ss *session) error {
	c.Reader().SetMaxSize(helloMax)
	c.SetMaxDecompressed(helloMax)
	uc.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	p, err := c.ReadPacket()
	if err != nil {
		return readError(err, "no hello within "+s.cfg.HelloTimeout.String())
	}
	hello, err := ss.hello(p)
	if err != nil {
		return err
	}
	if err := c.ApplyPeerHello(hello, 0); err != nil {
		return protoErr("%v", err)
	}
	if c.Encoding() != wire.RencodePlus {
		return &protoError{reason: packet.ReasonVersionError, msg: "this encoder speaks rencodeplus only (xpra 6.x)"}
	}
	uc.SetReadDeadline(time.Time{})
	for _, p := range ss.greeting() {
		if err := ss.send(p); err != nil {
			return err
		}
	}
	// Pixels may now come: one frame per packet at most.
	c.Reader().SetMaxSize(s.cfg.packetMax())
	for {
		p, err := s.readPacket(uc, c.Reader())
		if err != nil {
			return readError(err, "packet not complete within "+s.cfg.BodyTimeout.String())
		}
		if err := ss.dispatch(p); err != nil {
			return err
		}
	}
}

// readPacket reads one packet: its raw chunks and main chunk, decoded
// and decompressed within packetMax. The first header may take any
// time (callers keep their connection between frames); from it on, the
// whole packet must come within BodyTimeout, so a stalled sender does
// not hold a frame's worth of memory.
func (s *Server) readPacket(uc *net.UnixConn, r *wire.Reader) (conn.Packet, error) {
	var raws []wire.Frame
	for {
		h, n, err := r.ReadHeader()
		if err != nil {
			return nil, err
		}
		if len(raws) == 0 {
			uc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
		}
		f, err := r.ReadPayload(h, n)
		if err != nil {
			return nil, err
		}
		if h.Index == 0 {
			uc.SetReadDeadline(time.Time{})
			return conn.DecodeFrames(raws, f, s.cfg.packetMax(), packet.Aliases{})
		}
		if len(raws) == wire.MaxPendingRaw {
			return nil, fmt.Errorf("more than %d raw chunks before a main chunk", wire.MaxPendingRaw)
		}
		raws = append(raws, f)
	}
}

// readError keeps a clean end of stream apart from malformed or late
// input, which the caller is told about (timeout says how).
func readError(err error, timeout string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return protoErr("%s", timeout)
	}
	return protoErr("%v", err)
}
