// SPDX-License-Identifier: GPL-2.0-or-later

// Package worker is the relay worker's glue (cmd/xpra-proxy-worker
// --relay): one authenticated connection, as the session's owner, from
// the hand-over to the end. It answers the requests the proxy answers
// itself, chooses the session (package target), does the hellos with the
// server, and runs the relay (package relay) with re-encoding where it
// applies (package reencode) and the connection's control socket
// (package control/proxyctl).
package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/xpra-proxy/xpra-proxy/control/proxyctl"
	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/internal/crashhook"
	"github.com/xpra-proxy/xpra-proxy/internal/timeline"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/challenge"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/sockdir"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
	"github.com/xpra-proxy/xpra-proxy/protocol/xpraurl"
	"github.com/xpra-proxy/xpra-proxy/reencode"
	"github.com/xpra-proxy/xpra-proxy/relay"
	"github.com/xpra-proxy/xpra-proxy/target"
	"github.com/xpra-proxy/xpra-proxy/version"
)

// readWriter reads what the pre-auth stage read ahead, then the socket;
// it writes to the socket directly (conn.Splitter), keeping writev.
type readWriter struct {
	io.Reader
	io.Writer
}

func (rw readWriter) WriteHalf() io.Writer { return rw.Writer }

// Session is one authenticated connection in its relay worker, running
// as the session's owner.
type Session struct {
	State  handover.State
	Launch launch.Launch
	Log    *slog.Logger

	// Sessions is the channel to ask the supervisor for a new session
	// (target/ondemand.go), nil when the proxy starts none; StartMode is
	// its start-session setting (target.StartOnRequest or StartAuto).
	Sessions  *ipc.Conn
	StartMode string
	// RootControl is the root-only :proxy-PID socket the supervisor bound
	// in its own directory (supervisor/rootctl.go), nil without one; it
	// is served like the user's and closed when the relay ends.
	RootControl net.Listener
	// Timeline, when the supervisor asked for one (--setup-start), gets
	// the relay's setup stages and is logged once the hellos are done.
	Timeline *timeline.Timeline

	client *conn.Conn
	nc     net.Conn // the client's socket, under client
	hello  caps.Hello
	end    ipc.Message // what Ended reports, as far as Run got
}

// Ended is the worker's report of its connection for the supervisor's
// relay-ended audit record (ipc.RelayEnded): the display, the relay's
// bytes each way and why it ended (err: what Run returned).
func (s *Session) Ended(err error) ipc.Message {
	m := s.end
	m.Kind = ipc.RelayEnded
	if m.Reason == "" && err != nil {
		m.Reason = err.Error()
	}
	return m
}

// Run serves the client: a request the proxy answers itself, or a relay
// to the chosen session until either side leaves.
func (s *Session) Run(ctx context.Context, nc net.Conn) error {
	s.nc = nc
	// Bytes the pre-auth stage read past the hello come first.
	s.client = conn.New(readWriter{io.MultiReader(bytes.NewReader(s.State.Leftover), nc), nc})
	s.hello = caps.ParseHello(s.State.Hello)
	crashhook.Relay(s.hello.Display) // nothing, outside the e2e crash test's build
	if err := s.client.ApplyPeerHello(s.hello, int(s.hello.CompressionLevel)); err != nil {
		return s.refuse(packet.ReasonProtocolError, "failed to negotiate a packet encoder")
	}
	switch req := target.Request(s.hello); req {
	case "":
	case "info", "id", "connect_test":
		s.end.Reason = "answered " + req
		return s.answer(nc, req)
	case "detach":
		// relayed to the real server, as the reference does
	default:
		return s.refuse("invalid request", req)
	}
	// The finder owns the session channel from here: it closes it.
	f := &target.Finder{Launch: s.Launch, Log: s.Log, Sessions: s.Sessions, StartMode: s.StartMode}
	s.Sessions = nil
	display, started, err := f.Choose(ctx, s.hello)
	if err != nil {
		var te *target.Error
		if errors.As(err, &te) {
			return s.refuse(te.Reason, te.Detail)
		}
		return err
	}
	s.end.Display = display
	if !s.hello.Connect {
		// connect=False: the client only wants to know where it would go
		// (and, for a session it had started, where its socket is).
		s.end.Reason = "connect=False: told the client its display"
		d := value.Dict{{Key: "display", Value: display}}
		if started != nil {
			d = append(d, value.Item{Key: "socket-path", Value: started.Socket})
			if started.Mode != "" {
				d = append(d, value.Item{Key: "mode", Value: started.Mode})
			}
		}
		if err := s.client.WritePacket(conn.Packet{packet.Hello, d}); err != nil {
			return err
		}
		awaitHangup(nc, 5*time.Second)
		return nil
	}
	s.Log = s.Log.With("display", display)
	s.Timeline.Mark("chosen")
	server, dest, err := s.connect(ctx, display)
	if err != nil {
		return s.serverFailed(dest, stageConnect, err)
	}
	s.Timeline.Mark("connected")
	return s.relay(ctx, nc, server, dest)
}

// serverFailed tells the client and the log, in the same words, why the
// session's server could not be used.
// A remote target's address is the admin's business: the client reads
// "the session", the log has the address too.
func (s *Session) serverFailed(t xpraurl.Target, stage string, err error) error {
	name := "the session"
	if (t.Scheme == "" || t.Scheme == "socket") && t.Display != "" {
		name = t.Display
	}
	reason, detail := serverFailure(name, stage, s.helloTimeout(), err)
	if stage == stageHello {
		// The client's dialect, not ours: the proxy wrote the server the
		// client's own packet encoding.
		d := dialect{version: s.hello.Version, rencodePlus: s.client.Encoding() == wire.RencodePlus}
		if why, ok := mismatchDetail(d, err); ok {
			reason, detail = packet.ReasonVersionError, why
		}
	}
	s.Log.Warn("server failed", "reason", reason, "detail", detail, "server", t.String(), "err", err)
	return s.refuse(reason, detail)
}

// helloTimeout bounds connecting to the session, and then its hello.
func (s *Session) helloTimeout() time.Duration {
	if s.Launch.ServerHelloTimeout > 0 {
		return s.Launch.ServerHelloTimeout
	}
	return defaultServerHelloTimeout
}

func (s *Session) refuse(reason string, details ...string) error {
	// The handshake's deadline may be what just expired: the refusal
	// gets time of its own, and the client a moment to read it and hang
	// up first (a close with its bytes unread would reset the connection
	// and could destroy the refusal).
	_ = s.nc.SetDeadline(time.Time{})
	_ = s.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := s.client.WritePacket(packet.NewDisconnect(reason, details...)); err == nil {
		awaitHangup(s.nc, time.Second)
	}
	return fmt.Errorf("refused: %s", strings.TrimSpace(reason+" "+strings.Join(details, "; ")))
}

// answer replies to info, id and connect_test for the proxy itself.
func (s *Session) answer(nc net.Conn, req string) error {
	host, _ := os.Hostname()
	var d value.Dict
	switch req {
	case "connect_test":
		v, _ := s.hello.Lookup("connect_test_request")
		d = value.Dict{{Key: "connect_test_response", Value: v}}
	case "id":
		d = value.Dict{{Key: "session-type", Value: "proxy"}, {Key: "session-name", Value: "xpra-proxy"},
			{Key: "platform", Value: runtime.GOOS}, {Key: "pid", Value: int64(os.Getpid())}}
	default:
		d = value.Dict{{Key: "server.type", Value: "xpra-proxy"}, {Key: "server.mode", Value: "proxy"},
			{Key: "server.hostname", Value: host}, {Key: "server.platform", Value: runtime.GOOS},
			{Key: "server.pid", Value: int64(os.Getpid())}, {Key: "version", Value: version.For(s.client.Encoding() == wire.RencodePlus)},
			{Key: "proxy.version", Value: version.Proxy}, {Key: "proxy.user", Value: s.Launch.Username}}
		for i, disp := range s.user().Displays() {
			d = append(d, value.Item{Key: fmt.Sprintf("sessions.%d.display", i), Value: disp})
		}
	}
	if s.hello.Form() == caps.Nested {
		// 6.x's shape, as its own proxy answers: "server": {"type": ...}.
		d = caps.Nest(d)
	}
	if err := s.client.WritePacket(conn.Packet{packet.Hello, d}); err != nil {
		return err
	}
	// The client hangs up once it has its answer, as it does with xpra's
	// server, which waits 5 s for that. Hanging up first races the
	// client's reader thread against its parser: seeing the end first,
	// the client drops the answer and exits without a word.
	awaitHangup(nc, 5*time.Second)
	return nil
}

// user is what the user may reach, for the proxy's own answers, the
// connection and its control socket.
func (s *Session) user() target.Finder { return target.Finder{Launch: s.Launch, Log: s.Log} }

// connect opens the target as this (unprivileged) user: the permissions
// on the user's own sockets do the access control.
func (s *Session) connect(ctx context.Context, display string) (net.Conn, xpraurl.Target, error) {
	t, err := xpraurl.Parse(display, xpraurl.V3)
	if err != nil {
		return nil, t, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.helloTimeout())
	defer cancel()
	if t.Scheme == "" {
		path, err := sockdir.Find(s.user().SocketDirs(), sockdir.Hostname(), t.Display)
		if err != nil {
			return nil, t, err
		}
		if !s.user().OwnSocket(path) {
			return nil, t, fmt.Errorf("%s is not owned by uid %d", path, s.Launch.UID)
		}
		t = xpraurl.Target{Scheme: "socket", SocketPath: path, Display: t.Display}
	}
	c, err := t.Dial(ctx)
	return c, t, err
}

// relay does the hello with the server, then moves packets both ways.
func (s *Session) relay(ctx context.Context, cnc, snc net.Conn, t xpraurl.Target) error {
	defer snc.Close()
	// Both sides get the handshake's time: a client asked to answer the
	// server's own challenge must not hold the worker forever.
	s.Log.Info("waiting for the server's hello", "server", t.String(), "timeout", s.helloTimeout())
	_ = snc.SetDeadline(time.Now().Add(s.helloTimeout()))
	_ = cnc.SetDeadline(time.Now().Add(s.helloTimeout()))
	sc := conn.New(snc)
	// A rencodeplus client's server is 4.3+: its first packet must be
	// rencodeplus too (6.x decodes nothing else, and 4.x reads nested
	// strings such as the proxy video specs as bytes from rencode).
	if s.client.Encoding() == wire.RencodePlus {
		_ = sc.SetEncoding(wire.RencodePlus)
	}
	form := s.hello.Form()
	opts := relay.ServerHelloOptions{Username: s.hello.Username, SessionOptions: s.Launch.SessionOptions,
		Digests: digest.Supported(), SaltDigests: digest.SupportedSalt(), UID: s.Launch.UID, GID: s.Launch.GID, Form: form}
	if t.Username != "" {
		opts.Username = t.Username
	}
	password, hasPassword := t.Password, t.HasPassword
	if !hasPassword {
		password, hasPassword = s.Launch.SessionOptions["password"]
	}
	// With the shared encoder, the server is asked for raw frames that the
	// relay re-encodes (package reencode).
	enc, encOpts := reencode.Connect(s.Launch.EncoderSocket, s.Launch.EncoderUID, form, s.client.Encoding(), s.hello.Caps, s.Log)
	if enc != nil {
		defer enc.Close()
		opts.RawFrames, opts.ProxyVideo = encOpts.Mode == reencode.RawFrames, encOpts.ProxyCaps
	}
	hello := s.State.Hello
	if err := sc.WritePacket(conn.Packet{packet.Hello, relay.ServerHello(hello, opts)}); err != nil {
		return s.serverFailed(t, stageHello, err)
	}
	s.Timeline.Mark("hello_sent")
	for {
		p, err := sc.ReadPacket()
		if err != nil {
			var de *conn.DisconnectError
			if errors.As(err, &de) {
				s.Log.Warn("the server refused the connection", "reason", de.Reason, "detail", strings.Join(de.Details, ", "))
				return s.refuse(de.Reason, de.Details...)
			}
			return s.serverFailed(t, stageHello, err)
		}
		switch p[0] {
		case packet.Challenge:
			ch, err := challenge.ParseChallenge(p)
			if err != nil {
				return s.refuse(packet.ReasonAuthError, "invalid challenge from the server")
			}
			var answer value.Dict
			if hasPassword {
				if answer, err = ch.Answer([]byte(password)); err != nil {
					s.Log.Warn("server challenge", "err", err)
					return s.refuse(packet.ReasonAuthError, err.Error())
				}
			} else {
				// Pass the server's own challenge through to the client.
				if err := s.client.WritePacket(p); err != nil {
					return err
				}
				cp, err := s.client.ReadPacket()
				if err != nil || cp[0] != packet.Hello || len(cp) < 2 {
					return fmt.Errorf("client answer to the server's challenge: %v", err)
				}
				d, _ := cp[1].(value.Dict)
				for _, it := range d {
					if k, _ := value.AsString(it.Key); strings.HasPrefix(k, "challenge") {
						answer = append(answer, it)
					}
				}
			}
			opts.ChallengeAnswers = answer
			if err := sc.WritePacket(conn.Packet{packet.Hello, relay.ServerHello(hello, opts)}); err != nil {
				return err
			}
		case packet.Hello:
			var d value.Dict
			ok := len(p) >= 2
			if ok {
				d, ok = p[1].(value.Dict)
			}
			if !ok {
				return s.refuse(packet.ReasonProtocolError, "invalid hello from the server")
			}
			s.Timeline.Mark("server_hello")
			sh := caps.ParseHello(d)
			if err := sc.ApplyPeerHello(sh, 0); err != nil {
				return s.refuse(packet.ReasonProtocolError, err.Error())
			}
			if err := s.client.WritePacket(conn.Packet{packet.Hello, relay.ClientHello(d, form, s.Launch.UID, s.Launch.GID)}); err != nil {
				return err
			}
			s.Timeline.Mark("hello_forwarded")
			// Info, not debug: the relay logs at info, and the flag that
			// made the timeline is the supervisor's debug level.
			s.Timeline.Log(s.Log, slog.LevelInfo, "relay setup timeline")
			_ = snc.SetDeadline(time.Time{})
			_ = cnc.SetDeadline(time.Time{})
			client := relay.NewLeg("client", cnc, s.client)
			client.Form = form
			client.EnablePings(s.hello.Caps)
			serverNet, serverConn, re := reencode.ForServer(enc, snc, sc, sh, encOpts, s.Log)
			if re != nil {
				defer re.Close()
			}
			server := relay.NewLeg("server", serverNet, serverConn)
			server.Form = sh.Form()
			server.EnablePings(sh.Caps)
			r := relay.New(client, server, s.Log)
			r.ProxyInfo = func() value.Dict {
				return value.Dict{{Key: "version", Value: version.Proxy}, {Key: "pid", Value: int64(os.Getpid())},
					{Key: "bytes.client", Value: client.Bytes()}, {Key: "bytes.server", Value: server.Bytes()}}
			}
			cx := &proxyctl.Connection{User: s.Launch.Username, Peer: s.Launch.Peer, Transport: s.Launch.Transport,
				Target: t.String(), Started: time.Now(), Client: client, Server: server}
			if re != nil {
				cx.Encode = &re.Stats
			}
			if cx.Transport == "" {
				cx.Transport = s.Launch.Listener
			}
			// The control socket is bound here, not in its goroutine, and
			// removed before Run returns on every path, since the worker
			// leaves through os.Exit, which runs no other goroutine's
			// clean-up (a third of the sockets stayed behind in a soak).
			if l, err := proxyctl.Listen(s.user().SocketDirs(), s.Launch.UID, s.Log); err != nil {
				s.Log.Warn("no control socket", "err", err)
			} else {
				s.Log.Info("control socket", "path", l.Addr().String())
				defer s.serveControl(ctx, l, false, cx, r)()
			}
			if s.RootControl != nil {
				defer s.serveControl(ctx, s.RootControl, true, cx, r)()
			}
			s.Log.Info("relaying", "server", sh.Str("version", ""))
			// The hellos are done: give their garbage back to the system
			// before settling in for a long relay (one worker per connection,
			// so its footprint is the proxy's per-connection cost).
			debug.FreeOSMemory()
			reason := r.Run(ctx)
			s.Log.Info("relay ended", "reason", reason, "client_bytes", client.Bytes(), "server_bytes", server.Bytes())
			s.end.Reason = reason
			s.end.Figures = map[string]int64{ipc.FigureBytesFromClient: client.Bytes(), ipc.FigureBytesFromServer: server.Bytes()}
			return nil
		case packet.Disconnect:
			// The server refused the login (a remote target's, or a
			// session host's, wrong password): the client is told its
			// words, not that the connection closed.
			reason, details := packet.DisconnectReason(p)
			s.Log.Warn("the server refused the connection", "reason", reason, "detail", strings.Join(details, ", "))
			return s.refuse(reason, details...)
		default:
			// Servers may send pings or logging before their hello: drop.
		}
	}
}

// serveControl serves the connection's control socket in the background
// and returns what stops it: it closes the listener (removing the file)
// and waits, within a bound, for the server to let its clients go.
func (s *Session) serveControl(ctx context.Context, l net.Listener, keep bool, cx *proxyctl.Connection, r *relay.Relay) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		proxyctl.Serve(ctx, l, s.Launch.UID, keep, cx.Info, func(reason string) {
			// Only signal: the control server waits for this to return.
			s.Log.Info("stopped through the control socket", "reason", reason)
			go r.Stop(nil, "server shutdown", true)
		}, s.Log)
	}()
	return func() {
		cancel()
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.Log.Warn("closing the control socket", "err", err)
		}
		select {
		case <-done:
		case <-time.After(controlGrace):
			s.Log.Warn("control socket server still busy at exit", "waited", controlGrace)
		}
	}
}

// controlGrace bounds the wait for the control server at exit: its own
// grace for open control connections (control.CloseGrace) and a margin.
const controlGrace = 2 * time.Second

// awaitHangup lets the client read its answer and hang up first, up to
// d: a connection closed right behind the answer can reach an xpra 3.1
// client as "connection lost" before it has handled the answer (seen with
// `xpra start ssl://... --attach=no`).
func awaitHangup(nc net.Conn, d time.Duration) {
	_ = nc.SetReadDeadline(time.Now().Add(d))
	_, _ = io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
}
