// SPDX-License-Identifier: GPL-2.0-or-later

// Package transport tells the protocols arriving on one TCP port apart and
// terminates the ones wrapped around the xpra stream: TLS, HTTP (the HTML5
// client's files) and WebSocket (PROTOCOL.md §7.3-7.5, PROXY.md §2.2). It
// runs in the unprivileged pre-auth process, which owns the accepted socket,
// so it reads bytes instead of peeking with MSG_PEEK and replays them
// (WithPrefix) to whoever handles the connection next.
package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Kind is what the first bytes of a connection look like.
type Kind int

const (
	// NeedMore: the bytes so far could still become more than one kind.
	NeedMore Kind = iota
	// Xpra: an xpra chunk header ('P', but not "POST ").
	Xpra
	// TLS: a TLS handshake record (0x16).
	TLS
	// HTTP: a request line containing "HTTP/".
	HTTP
	// SSH: an SSH version banner ("SSH-").
	SSH
	// Other: none of the above.
	Other
	// ProxyHeader: a PROXY protocol header, v1 ("PROXY ") or v2 (its
	// 12-byte signature). Sent by a load balancer: believed only from
	// the peers in proxy-protocol-from, which read it before sniffing
	// (preauth.ReadProxyHeader); anywhere else it is refused.
	ProxyHeader
)

// The PROXY protocol's signatures (HAProxy's proxy-protocol.txt).
const (
	ProxySigV1 = "PROXY "
	ProxySigV2 = "\r\n\r\n\x00\r\nQUIT\n"
)

func (k Kind) String() string {
	switch k {
	case NeedMore:
		return "undecided"
	case Xpra:
		return "xpra"
	case TLS:
		return "tls"
	case HTTP:
		return "http"
	case SSH:
		return "ssh"
	case Other:
		return "other"
	case ProxyHeader:
		return "proxy-protocol"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// The reference's peek limits (PROXY.md §2.2): at most 8192 bytes, 1 s.
const (
	MaxPeek     = 8192
	PeekTimeout = time.Second
)

// Sniff classifies the first bytes of a connection as xpra's server does
// (3.1 server_core.py may_wrap_socket): 'P' but not "POST " is xpra, 0x16
// is TLS, "SSH-" is SSH, a first line with "HTTP/" after its start is HTTP.
// A PROXY protocol header (either version) is told apart too, so that
// one from a peer not trusted to send it is refused rather than read as
// an xpra packet or a line of text.
// It returns NeedMore while a longer prefix could change the answer, and
// once it has decided, no longer prefix changes it.
func Sniff(b []byte) Kind {
	if len(b) == 0 {
		return NeedMore
	}
	for _, sig := range []string{ProxySigV1, ProxySigV2} {
		if n := min(len(b), len(sig)); string(b[:n]) == sig[:n] {
			if n < len(sig) {
				return NeedMore
			}
			return ProxyHeader
		}
	}
	switch b[0] {
	case 0x16:
		return TLS
	case 'P':
		// Only "POST " makes a 'P' anything but xpra: decide as soon as
		// the bytes leave that spelling.
		if n := min(len(b), 5); string(b[:n]) != "POST "[:n] {
			return Xpra
		}
		if len(b) < 5 {
			return NeedMore
		}
		return sniffLine(b)
	}
	if n := min(len(b), 4); string(b[:n]) == "SSH-"[:n] {
		if n < 4 {
			return NeedMore
		}
		return SSH
	}
	return sniffLine(b)
}

// sniffLine looks for "HTTP/" in the first line. A request line is a
// method token, a space, then printable text: anything else is decided as
// Other at once, so binary garbage does not wait for the peek timeout.
func sniffLine(b []byte) Kind {
	method := true
	for i, c := range b {
		switch {
		case c == '\r' || c == '\n':
			if bytes.Index(b[:i], []byte("HTTP/")) > 0 {
				return HTTP
			}
			return Other
		case method && c == ' ':
			if i == 0 {
				return Other
			}
			method = false
		case method && !isTokenChar(c):
			return Other
		case c < 0x20 && c != '\t' || c == 0x7f:
			return Other
		}
	}
	if len(b) >= MaxPeek {
		return Other
	}
	return NeedMore
}

// isTokenChar reports whether c may appear in an HTTP method (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// Peek reads from nc until Sniff decides, max bytes have arrived (Other,
// if still undecided) or timeout passes. The bytes read are returned as
// prefix; hand them on with WithPrefix. A peer that stops sending before
// the kind is clear gives NeedMore with a nil error (xpra treats a silent
// TCP peer as an xpra client); end of stream or a read error is returned
// as an error, with what was read. The read deadline is cleared on return.
func Peek(nc net.Conn, max int, timeout time.Duration) (kind Kind, prefix []byte, err error) {
	return PeekFrom(nc, max, time.Time{}, timeout)
}

// PeekFrom is Peek for a peer that speaks first, as every client on an
// xpra port does (a hello, a TLS ClientHello, an HTTP request): it waits
// for the first bytes until first (when later than timeout from now),
// then timeout for the rest. A client slow to start, such as a TLS
// client loading its CA store on a busy machine, is then not taken for a
// silent xpra client after a second, with its ClientHello read later as
// an xpra packet.
func PeekFrom(nc net.Conn, max int, first time.Time, timeout time.Duration) (kind Kind, prefix []byte, err error) {
	if max <= 0 {
		max = MaxPeek
	}
	deadline := time.Now().Add(timeout)
	if first.After(deadline) {
		deadline = first
	}
	if err := nc.SetReadDeadline(deadline); err != nil {
		return NeedMore, nil, fmt.Errorf("transport: peek: %w", err)
	}
	buf := make([]byte, 0, max)
	kind = NeedMore
	for {
		n, rerr := nc.Read(buf[len(buf):cap(buf)])
		if n > 0 && len(buf) == 0 && first.After(time.Now()) {
			// The client has spoken: the rest of the peek is the usual one.
			if err := nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
				return NeedMore, buf[:n], fmt.Errorf("transport: peek: %w", err)
			}
		}
		buf = buf[:len(buf)+n]
		if kind = Sniff(buf); kind != NeedMore {
			break
		}
		if len(buf) == max {
			kind = Other
			break
		}
		if rerr != nil {
			if !errors.Is(rerr, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("transport: peek after %d bytes: %w", len(buf), rerr)
			}
			break
		}
	}
	if derr := nc.SetReadDeadline(time.Time{}); derr != nil && err == nil {
		err = fmt.Errorf("transport: peek: %w", derr)
	}
	return kind, buf, err
}

// WithPrefix returns a connection that reads prefix before reading nc.
// Everything else goes to nc, including CloseWrite where nc has it.
func WithPrefix(nc net.Conn, prefix []byte) net.Conn {
	if len(prefix) == 0 {
		return nc
	}
	return &prefixConn{Conn: nc, prefix: prefix}
}

type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes nc where it can (TCP, unix, TLS connections).
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("transport: %T cannot half-close: %w", c.Conn, errors.ErrUnsupported)
}

// NetConn returns the wrapped connection, as tls.Conn.NetConn does.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

type closeWriter interface{ CloseWrite() error }

// CloseWrite ends what this side sends on c, layer by layer from the
// outside in, each the way its peer expects: a WebSocket close frame, a
// TLS close_notify, then the end of the TCP (or unix) stream. It unwraps
// c through NetConn (tls.Conn, websocket.Conn, WithPrefix). tls.Conn's
// own CloseWrite sends close_notify only and leaves the TCP stream open,
// and closing the socket instead sends no close_notify at all, which
// OpenSSL 3 clients report as an error (UNEXPECTED_EOF_WHILE_READING).
func CloseWrite(c net.Conn) error {
	var errs []error
	for c != nil {
		// A prefixConn only replays bytes on the read side: its CloseWrite
		// is the next layer's, which the walk reaches anyway.
		if _, replay := c.(*prefixConn); !replay {
			if cw, ok := c.(closeWriter); ok {
				if err := cw.CloseWrite(); err != nil {
					errs = append(errs, fmt.Errorf("transport: ending %T: %w", c, err))
				}
			}
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return errors.Join(errs...)
}

// Hangup ends a connection from this side without losing what was sent
// on it: CloseWrite, then it reads and drops what the client still sends
// until the client closes too, or linger passes, and closes the socket.
// Closing a socket with unread bytes in it sends a reset, and a reset can
// destroy the last answer before the client has read it. The error is
// CloseWrite's (the client may have gone already); how the client ends
// the drain is its own business.
func Hangup(c net.Conn, linger time.Duration) error {
	err := CloseWrite(c)
	raw := c
	for {
		u, ok := raw.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		raw = u.NetConn()
	}
	// The bottom socket, not c: what follows close_notify or a close
	// frame need not parse, and is dropped unread.
	if derr := raw.SetReadDeadline(time.Now().Add(linger)); derr == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(raw, hangupDrainLimit))
	}
	return errors.Join(err, raw.Close())
}

// hangupDrainLimit bounds what Hangup reads from a client that keeps
// sending: past it, the reset is the client's doing.
const hangupDrainLimit = 1 << 20
