// SPDX-License-Identifier: GPL-2.0-or-later

package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/peercred"
	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Limits of a control socket (PROXY.md §2.16, §2.18).
const (
	// MaxConnections is how many control connections are served at once;
	// more are closed as soon as they are accepted, as the reference does.
	MaxConnections = 20
	// PacketLimit bounds a packet read from a control client, before and
	// after decompression: its hello is a few KiB.
	PacketLimit = 64 << 10
	// HelloTimeout is how long a client has to send its hello.
	HelloTimeout = 20 * time.Second
	// ExitTimeout is how long a client that got its reply may stay before
	// it is disconnected ("client exit timeout").
	ExitTimeout = 5 * time.Second
	// CloseGrace is how long a client has to read a disconnect and hang
	// up before the connection is closed under it (the reference
	// force-closes 1 s after a disconnect too).
	CloseGrace = time.Second
	// writeTimeout bounds every write to a client that does not read.
	writeTimeout = 5 * time.Second
	// drainLimit bounds what is read and thrown away while closing.
	drainLimit = 1 << 20
)

// DefaultVersion answers a version request when Server.Version is empty:
// the protocol generation the proxy speaks.
const DefaultVersion = "3.1.3"

// StopReason is what Stop is called with, the reference's words.
const StopReason = "socket request"

// onlyHandles is the reference's refusal of every other request.
const onlyHandles = "this socket only handles 'info', 'version' and 'stop' requests"

// Server answers the control socket of one relay worker: info, version
// and stop requests from the session's owner or root, without
// authentication (the socket's mode and the peer's uid are the check).
type Server struct {
	Owner   int               // the session owner's uid; root may talk too
	Info    func() value.Dict // the info reply (nested dicts are fine)
	Version string            // the version reply; DefaultVersion when empty
	// Version6 is the version reply to rencodeplus clients (xpra 4.3 and
	// later), whose dialect the hello tells; Version when empty.
	Version6 string
	// Stop is called once, on the first stop request, after the client
	// has its reply and before Serve winds down. It must only signal the
	// worker to stop (cancel a context, say): Serve waits for it to return.
	Stop func(reason string)
	Log  *slog.Logger
	// KeepSocket: the socket file is not this process's to remove (the
	// supervisor's :proxy, bound and removed by root; the sandboxed
	// control process may not unlink anything).
	KeepSocket bool

	helloTimeout, exitTimeout, closeGrace time.Duration // zero: the defaults; tests shorten them

	once     sync.Once
	stopOnce sync.Once
	stopped  chan struct{} // closed by a stop request
}

func (s *Server) setup() {
	s.once.Do(func() {
		s.stopped = make(chan struct{})
		if s.helloTimeout == 0 {
			s.helloTimeout = HelloTimeout
		}
		if s.exitTimeout == 0 {
			s.exitTimeout = ExitTimeout
		}
		if s.closeGrace == 0 {
			s.closeGrace = CloseGrace
		}
	})
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Serve accepts control connections on l until ctx ends or a client asks
// the worker to stop, then closes the connections still open, removes the
// socket file and returns. A stop request also stops accepting at once:
// the reference removes the socket as part of stopping, and `xpra stop`
// reports success when the socket is gone.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.setup()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-s.stopped:
		}
		_ = closeListener(l, s.KeepSocket)
	}()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		active = map[net.Conn]struct{}{}
		sem    = make(chan struct{}, MaxConnections)
		err    error
	)
	for {
		nc, aerr := l.Accept()
		if aerr != nil {
			if s.stopping(ctx) {
				break
			}
			if transientAccept(aerr) {
				s.log().Warn("accepting a control connection", "err", aerr)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			err = fmt.Errorf("control socket: %w", aerr)
			break
		}
		select {
		case sem <- struct{}{}:
		default:
			s.log().Warn("too many control connections, closing a new one", "max", MaxConnections)
			nc.Close()
			continue
		}
		mu.Lock()
		active[nc] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer func() {
				mu.Lock()
				delete(active, nc)
				mu.Unlock()
				nc.Close()
			}()
			s.handle(nc)
		}()
	}
	// The worker is going away: connections still open get the grace
	// period (the one that asked to stop is reading its reply), then end.
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(s.closeGrace):
		mu.Lock()
		for nc := range active {
			nc.Close()
		}
		mu.Unlock()
		<-finished
	}
	if cerr := closeListener(l, s.KeepSocket); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

func (s *Server) stopping(ctx context.Context) bool {
	select {
	case <-s.stopped:
		return true
	default:
		return ctx.Err() != nil
	}
}

// closeListener closes l and removes its socket file unless keep (ours
// do that on Close; a plain net.UnixListener made by Listen does too, one
// from a file does not).
func closeListener(l net.Listener, keep bool) error {
	err := l.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if _, ours := l.(*listener); ours || keep {
		return err
	}
	if a, ok := l.Addr().(*net.UnixAddr); ok && a.Name != "" && a.Name[0] != '@' {
		if rerr := os.Remove(a.Name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("removing control socket: %w", rerr))
		}
	}
	return err
}

// transientAccept reports accept errors worth retrying after a pause.
func transientAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// handle serves one connection and logs how it ended. A bug here must not
// take the relay (the user's session) down with it, hence the recover; the
// fuzz target calls serveConn directly, so it still sees any panic.
func (s *Server) handle(nc net.Conn) {
	defer func() {
		if r := recover(); r != nil {
			s.log().Error("control connection panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	err := s.serveConn(nc)
	switch {
	case err == nil:
	case errors.Is(err, errNoHello):
		// `xpra list` probes sockets by connecting and hanging up.
		s.log().Debug("control connection closed without a hello")
	default:
		s.log().Warn("control connection", "err", err)
	}
}

// errNoHello: the peer hung up before sending anything.
var errNoHello = errors.New("closed before a hello")

// serveConn answers one control connection.
func (s *Server) serveConn(nc net.Conn) error {
	s.setup()
	c := conn.New(nc)
	c.Reader().SetMaxSize(PacketLimit)
	c.SetMaxDecompressed(PacketLimit)
	c.SetBudget(budget.ForPacket(PacketLimit))
	send := func(p conn.Packet) error {
		_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		return c.WritePacket(p)
	}
	refuse := func(reason string, details ...string) error {
		err := fmt.Errorf("refused: %s %q", reason, details)
		if werr := send(packet.NewDisconnect(reason, details...)); werr != nil {
			return errors.Join(err, werr)
		}
		s.hangUp(nc)
		return err
	}
	cred, err := peercred.Of(nc)
	if err != nil {
		return errors.Join(err, refuse(packet.ReasonPermissionError, "cannot identify the peer of this control socket"))
	}
	if !s.allowed(int(cred.Uid)) {
		// Only a changed socket mode lets another user this far.
		return refuse(packet.ReasonPermissionError,
			"uid "+strconv.Itoa(int(cred.Uid))+" may not use this control socket")
	}
	log := s.log().With("peer_uid", cred.Uid, "peer_pid", cred.Pid)

	_ = nc.SetReadDeadline(time.Now().Add(s.helloTimeout))
	p, err := c.ReadPacket()
	if err != nil {
		var ne net.Error
		switch {
		case errors.Is(err, io.EOF) && c.Reader().Buffered() == 0:
			return errNoHello
		case errors.As(err, &ne) && ne.Timeout():
			return errors.Join(err, refuse(packet.ReasonLoginTimeout))
		}
		return errors.Join(err, refuse(packet.ReasonProtocolError, "invalid packet: expected a hello"))
	}
	if p[0] != packet.Hello {
		return refuse(packet.ReasonControlCommand, onlyHandles)
	}
	var d value.Dict
	if len(p) >= 2 {
		d, _ = p[1].(value.Dict)
	}
	if d == nil {
		return refuse(packet.ReasonControlCommand, onlyHandles)
	}
	h := caps.ParseHello(d)
	if err := c.ApplyPeerHello(h, int(min(max(h.CompressionLevel, 0), 9))); err != nil {
		return errors.Join(err, refuse(packet.ReasonProtocolError, "failed to negotiate a packet encoder"))
	}
	if h.Challenge {
		return refuse(packet.ReasonAuthError, "this socket does not use authentication")
	}
	// The reference's test, in its order: the generic request or the
	// legacy flag (so `xpra id`, which also sets info_request, gets info).
	generic := h.Str("request", "")
	is := func(mode string) bool { return generic == mode || h.Bool(mode+"_request", false) }
	switch {
	case is("info"):
		log.Info("control request", "request", "info")
		info := s.info()
		if h.Form() == caps.Nested {
			// 6.x's shape: dicts all the way down, as its own
			// proxy instance answers ("proxy": {"bytes": {...}}).
			info = caps.Nest(caps.Flatten(info))
		}
		if err := send(conn.Packet{packet.Hello, info}); err != nil {
			return fmt.Errorf("sending info: %w", err)
		}
		return s.linger(c, nc, send, "info sent")
	case is("stop"):
		log.Info("control request", "request", "stop")
		// Reply first: Stop may end the process. The client then reports
		// success ("server requested disconnect") and waits for the
		// socket to go.
		err := send(packet.NewDisconnect(packet.ReasonServerShutdown, StopReason))
		s.stop()
		if err != nil {
			return fmt.Errorf("answering stop: %w", err)
		}
		s.hangUp(nc)
		return nil
	case is("version"):
		log.Debug("control request", "request", "version")
		v := s.Version
		if v == "" {
			v = DefaultVersion
		}
		if s.Version6 != "" && c.Encoding() == wire.RencodePlus {
			v = s.Version6
		}
		if err := send(conn.Packet{packet.Hello, value.Dict{{Key: "version", Value: v}}}); err != nil {
			return fmt.Errorf("sending version: %w", err)
		}
		return s.linger(c, nc, send, "version sent")
	}
	return refuse(packet.ReasonControlCommand, onlyHandles)
}

// linger waits for a client that has its reply to hang up, and
// disconnects it when it does not within the exit timeout.
func (s *Server) linger(c *conn.Conn, nc net.Conn, send func(conn.Packet) error, detail string) error {
	_ = nc.SetReadDeadline(time.Now().Add(s.exitTimeout))
	for {
		if _, err := c.ReadPacket(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if err := send(packet.NewDisconnect(packet.ReasonClientExitTimeout, detail)); err != nil {
					return err
				}
				s.hangUp(nc)
				return nil
			}
			return nil // the client hung up, as it should
		}
		// Anything it sends meanwhile is ignored; the deadline still holds.
	}
}

// hangUp ends a connection after a disconnect: closing at once would let
// the client's next write fail (EPIPE) before it has read our reason, and
// it would then report a lost connection instead. So the client gets the
// grace period to read and hang up; what it sends meanwhile is dropped.
func (s *Server) hangUp(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = nc.SetReadDeadline(time.Now().Add(s.closeGrace))
	_, _ = io.Copy(io.Discard, io.LimitReader(nc, drainLimit))
}

func (s *Server) info() value.Dict {
	if s.Info != nil {
		if d := s.Info(); len(d) > 0 {
			return d
		}
	}
	return value.Dict{{Key: "proxy", Value: value.Dict{{Key: "pid", Value: int64(os.Getpid())}}}}
}

// stop runs Stop once and makes Serve wind down.
func (s *Server) stop() {
	s.stopOnce.Do(func() {
		if s.Stop != nil {
			s.Stop(StopReason)
		}
		close(s.stopped)
	})
}

// allowed: the session's owner and root, nobody else.
func (s *Server) allowed(uid int) bool { return uid == 0 || uid == s.Owner }
