// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/internal/crashhook"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/challenge"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
	"github.com/xpra-proxy/xpra-proxy/version"
)

// Options shape the pre-auth exchange.
type Options struct {
	Listener    string
	Transport   string // what arrived: "tcp", "ssl", "ws", "wss", "unix"
	Peer        string
	PacketLimit int // largest packet accepted before authentication
	// DecompressedLimit, when positive, bounds a compressed chunk once
	// decompressed, below PacketLimit: a hello is a few to ~70 KB, and
	// inflating a bomb costs CPU in proportion. (An uncompressed chunk
	// costs nothing to inflate: the packet limit bounds it.)
	DecompressedLimit int
	LoginTimeout      time.Duration // hello and challenge answer, in total
	// FirstPacketTimeout bounds the wait for the first bytes and for the
	// hello, from the hand-over (Serve sets FirstPacketDeadline from it).
	FirstPacketTimeout  time.Duration
	FirstPacketDeadline time.Time
	// Deadline, when set, ends the login instead of LoginTimeout from
	// its start: the time the front spent (waiting for a slow client's
	// first bytes, the TLS handshake) counts too.
	Deadline time.Time
	Log      *slog.Logger
	// Proxied: the peer is a trusted load balancer (proxy-protocol-from):
	// its PROXY protocol header comes first, within ProxyTimeout, and
	// names the client (Serve, takeProxyHeader).
	Proxied      bool
	ProxyTimeout time.Duration
	// Confine, when set, narrows the process once it has become a TLS or
	// WebSocket transport, before it carries a byte (the transport
	// sandbox); an error ends the connection.
	Confine func() error
}

// authFailureDelay is how long a refused client waits for its disconnect,
// as the reference does, which also slows password guessing.
const authFailureDelay = time.Second

// Login runs the unprivileged first stage of a connection: it reads the
// client's hello, answers a version request, relays the password
// challenge the supervisor chose, and hands the connection over. It never
// sees a stored secret. When the supervisor hands back a stream socket
// (TLS and WebSocket, which this process terminates), Preauth returns it:
// the caller relays the plain stream between it and nc. handedOver says
// a relay worker has the connection: without a stream the socket is then
// the relay's, and the caller only closes its own descriptor (a shutdown
// would end the relay's connection too). Otherwise (a version answered,
// a refusal) the caller ends the connection.
func Login(nc net.Conn, sup *ipc.Conn, o Options) (stream *os.File, handedOver bool, err error) {
	stream, handedOver, err = login(nc, sup, o)
	if err != nil && stream != nil {
		stream.Close()
		stream = nil
	}
	return stream, handedOver, err
}

func login(nc net.Conn, sup *ipc.Conn, o Options) (*os.File, bool, error) {
	loginDeadline := o.Deadline
	if loginDeadline.IsZero() {
		loginDeadline = time.Now().Add(o.LoginTimeout)
	}
	_ = nc.SetDeadline(loginDeadline)
	if fp := o.FirstPacketDeadline; !fp.IsZero() && fp.Before(loginDeadline) {
		_ = nc.SetReadDeadline(fp)
	}
	c := conn.New(nc)
	c.SetPacketLimit(o.PacketLimit) // wire size, decompressed size, decoding budget
	decompressed := o.PacketLimit
	if o.DecompressedLimit > 0 {
		decompressed = o.DecompressedLimit
		c.SetMaxDecompressed(decompressed)
	}
	refuse := func(reason string, details ...string) error {
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WritePacket(packet.NewDisconnect(reason, details...)); err != nil {
			return fmt.Errorf("refusing (%s): %w", reason, err)
		}
		hangUp(nc)
		return fmt.Errorf("refused: %s", strings.TrimSpace(reason+" "+strings.Join(details, "; ")))
	}
	hello, err := readHello(c)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, false, errors.Join(err, refuse(packet.ReasonLoginTimeout))
		}
		if over := overBudget(err, decompressed); over != "" {
			// Sent as an attack would be: worth a warning, with the source.
			o.Log.Warn("hello over the pre-auth budget", "err", err)
			return nil, false, errors.Join(err, refuse(packet.ReasonProtocolError, over))
		}
		// Garbage gets a clear reason where the stream still allows one.
		return nil, false, errors.Join(err, refuse(packet.ReasonProtocolError, "invalid packet: expected a hello"))
	}
	_ = nc.SetReadDeadline(loginDeadline)
	h := caps.ParseHello(hello)
	crashhook.Preauth(h.Username) // nothing, outside the e2e crash test's build
	if err := c.ApplyPeerHello(h, int(h.CompressionLevel)); err != nil {
		return nil, false, errors.Join(err, refuse(packet.ReasonProtocolError, "failed to negotiate a packet encoder"))
	}
	if h.Request == "version" || h.Bool("version_request", false) {
		// Answered before authentication, as xpra does; then, as xpra
		// does, the client hangs up first. Ending the connection at once
		// raced the client: its reader thread, seeing the end, closed the
		// connection before its parser thread had handled the answer, and
		// the client exited silently.
		// Each dialect hears its own release (version.For).
		v := version.For(c.Encoding() == wire.RencodePlus)
		if err := c.WritePacket(conn.Packet{packet.Hello, value.Dict{{Key: "version", Value: v}}}); err != nil {
			return nil, false, fmt.Errorf("answering a version request: %w", err)
		}
		if !clientHangsUp(nc, versionGrace) {
			_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := c.WritePacket(packet.NewDisconnect(packet.ReasonDone, "version sent")); err != nil {
				return nil, false, fmt.Errorf("version request: disconnecting: %w", err)
			}
		}
		return nil, false, nil
	}
	if h.Has("cipher") || h.Has("encryption") {
		return nil, false, refuse(packet.ReasonAuthFailed, "AES encryption is not supported by this proxy: use TLS")
	}
	if err := sup.Send(ipc.Message{Kind: ipc.AuthBegin, Username: h.Username, Display: h.Display,
		Digests: h.Digests, SaltDigests: h.SaltDigests, Transport: o.Transport}, nil); err != nil {
		return nil, false, err
	}
	m, _, _, err := sup.Recv()
	if err != nil {
		return nil, false, err
	}
	var verify ipc.Message
	switch m.Kind {
	case ipc.Denied:
		time.Sleep(authFailureDelay)
		return nil, false, refuse(m.Reason, m.Details...)
	case ipc.Challenge:
		ch := challenge.Challenge{ServerSalt: m.Salt, Digest: m.Digest, SaltDigest: m.SaltDigest, Prompt: m.Prompt}
		if hello, err = askChallenge(c, ch); err != nil {
			if over := overBudget(err, decompressed); over != "" {
				o.Log.Warn("challenge answer over the pre-auth budget", "err", err)
				return nil, false, errors.Join(err, refuse(packet.ReasonProtocolError, over))
			}
			return nil, false, errors.Join(err, refuse(packet.ReasonAuthFailed, "invalid challenge response"))
		}
		h = caps.ParseHello(hello)
		verify = ipc.Message{Kind: ipc.AuthVerify, Response: h.ChallengeResponse, ClientSalt: h.ChallengeClientSalt}
	case ipc.NoChallenge:
		if h.Challenge {
			// The client has a password and waits for a challenge: a fake
			// one lets it go on (as the reference does); its answer is ignored.
			d, err := digest.ChooseDigest(h.Digests, digest.ServerOrder)
			if err != nil {
				d = digest.HMAC
			}
			sd, err := digest.ChooseDigest(h.SaltDigests, digest.ServerOrder[:6])
			if err != nil {
				sd = "hmac+sha256"
			}
			ch := challenge.Challenge{ServerSalt: digest.NewServerSalt(), Digest: d, SaltDigest: sd, Prompt: "password"}
			if hello, err = askChallenge(c, ch); err != nil {
				return nil, false, errors.Join(err, refuse(packet.ReasonAuthFailed, "invalid challenge response"))
			}
		}
		verify = ipc.Message{Kind: ipc.AuthVerify}
	default:
		return nil, false, fmt.Errorf("supervisor sent %q", m.Kind)
	}
	state := handover.State{Hello: hello, Encoding: c.Encoding(), Leftover: c.Reader().Drain(),
		Listener: o.Listener, Peer: o.Peer}
	blob, err := state.Marshal()
	if err != nil {
		return nil, false, errors.Join(err, refuse(packet.ReasonProtocolError, "hello too large"))
	}
	mfd, err := launch.Memfd("handover", blob)
	if err != nil {
		return nil, false, err
	}
	defer mfd.Close()
	if err := sup.Send(verify, mfd); err != nil {
		return nil, false, err
	}
	m, stream, _, err := sup.Recv()
	if err != nil {
		// A relay may have the connection already: leave the socket alone.
		return nil, true, err
	}
	switch m.Kind {
	case ipc.Accepted:
		o.Log.Debug("handed over", "worker", m.Worker)
		// The relay worker owns the xpra conversation now: say nothing more.
		// With a stream, this process carries its bytes.
		return stream, true, nil
	case ipc.Denied:
		time.Sleep(authFailureDelay)
		return nil, false, refuse(m.Reason, m.Details...)
	}
	return nil, true, fmt.Errorf("supervisor sent %q", m.Kind)
}

// overBudget returns the disconnect detail for a packet refused for what
// it would cost to decode (package budget) or decompress, else "".
func overBudget(err error, decompressed int) string {
	switch {
	case errors.Is(err, budget.ErrExceeded):
		return "packet too costly to decode before authentication"
	case errors.Is(err, compress.ErrTooLarge):
		return fmt.Sprintf("packet decompresses beyond %d bytes, the limit before authentication", decompressed)
	}
	return ""
}

// readHello reads the first packet, which must be a hello with a dict.
func readHello(c *conn.Conn) (value.Dict, error) {
	p, err := c.ReadPacket()
	if err != nil {
		return nil, fmt.Errorf("reading hello: %w", err)
	}
	if len(p) < 2 || p[0] != packet.Hello {
		return nil, fmt.Errorf("first packet is %v, not a hello", p[0])
	}
	d, ok := p[1].(value.Dict)
	if !ok {
		return nil, fmt.Errorf("hello capabilities are a %s", value.TypeName(p[1]))
	}
	return d, nil
}

// askChallenge sends a challenge and reads the hello that answers it.
func askChallenge(c *conn.Conn, ch challenge.Challenge) (value.Dict, error) {
	if err := c.WritePacket(ch.Packet()); err != nil {
		return nil, fmt.Errorf("sending challenge: %w", err)
	}
	hello, err := readHello(c)
	if err != nil {
		return nil, fmt.Errorf("reading challenge answer: %w", err)
	}
	h := caps.ParseHello(hello)
	if len(h.ChallengeResponse) == 0 {
		return nil, errors.New("the answer has no challenge_response")
	}
	return hello, nil
}

// versionGrace is how long a client that asked for the version has to
// hang up before it is told to (xpra's server waits 5 s too).
const versionGrace = 5 * time.Second

// clientHangsUp reads and drops what the client sends until it closes its
// side (true) or d passes (false).
func clientHangsUp(nc net.Conn, d time.Duration) bool {
	_ = nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// hangUp gives the client up to a second to read a disconnect and close
// first. Closing a socket with unread bytes in it sends a reset, and a
// reset can destroy the disconnect before the client reads it: the real
// xpra client over TLS then reported nothing at all instead of the reason.
func hangUp(nc net.Conn) {
	clientHangsUp(nc, time.Second)
}
