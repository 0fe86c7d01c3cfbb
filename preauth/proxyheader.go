// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/preauth/transport"
)

// The PROXY protocol header's budget. v1 is one line of at most 107
// bytes (the spec's limit). v2 is 16 bytes and a length; HAProxy's
// addresses and the usual TLVs (unique-id, ALPN, SSL facts, even a client
// certificate's CN) fit well in 4 KiB, which is also the library's own
// default bound (proxyproto.MaxV2HeaderSize). Nothing beyond the header
// is ever read: the bytes after it are the client's, and a plain xpra
// connection's socket goes to the relay as it is.
const (
	maxProxyV1     = 107
	MaxProxyHeader = 4096
)

// ErrNoProxyHeader: a trusted peer's connection did not start with a
// PROXY protocol header.
var ErrNoProxyHeader = errors.New("no PROXY protocol header")

// errClosedSilently: the peer closed without sending a byte, as a plain
// TCP health check does; not worth a warning.
var errClosedSilently = fmt.Errorf("%w: closed before sending anything", ErrNoProxyHeader)

// ReadProxyHeader reads one PROXY protocol header (v1 or v2) from r and
// nothing after it: its own framing finds the header's end (v1: the
// line's LF, read a byte at a time; v2: the length field) within the
// budget, then go-proxyproto parses and checks the bytes. It returns the
// header and its raw bytes. r's deadline is the caller's.
func ReadProxyHeader(r io.Reader) (*proxyproto.Header, []byte, error) {
	// 15 bytes: the shortest header of either version ("PROXY UNKNOWN\r\n";
	// v2 has 16), so this read never waits for the client's own bytes.
	raw := make([]byte, 15, 64)
	if n, err := io.ReadFull(r, raw); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, nil, errClosedSilently
		}
		return nil, raw[:n], fmt.Errorf("%w (%d bytes before %w)", ErrNoProxyHeader, n, err)
	}
	switch {
	case bytes.HasPrefix(raw, []byte(transport.ProxySigV2)):
		raw = raw[:16]
		if _, err := io.ReadFull(r, raw[15:]); err != nil {
			return nil, raw[:15], fmt.Errorf("PROXY v2 header cut short: %w", err)
		}
		n := int(binary.BigEndian.Uint16(raw[14:16]))
		if 16+n > MaxProxyHeader {
			return nil, raw, fmt.Errorf("PROXY v2 header of %d bytes is over the budget of %d", 16+n, MaxProxyHeader)
		}
		raw = append(raw, make([]byte, n)...)
		if _, err := io.ReadFull(r, raw[16:]); err != nil {
			return nil, raw[:16], fmt.Errorf("PROXY v2 header cut short: %w", err)
		}
	case bytes.HasPrefix(raw, []byte(transport.ProxySigV1)):
		var b [1]byte
		for raw[len(raw)-1] != '\n' {
			if len(raw) >= maxProxyV1 {
				return nil, raw, fmt.Errorf("PROXY v1 header has no end within %d bytes", maxProxyV1)
			}
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return nil, raw, fmt.Errorf("PROXY v1 header cut short: %w", err)
			}
			raw = append(raw, b[0])
		}
	default:
		return nil, raw, fmt.Errorf("%w: the first bytes are %q", ErrNoProxyHeader, raw)
	}
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(raw), len(raw)))
	if err != nil {
		return nil, raw, fmt.Errorf("malformed PROXY header: %w", err)
	}
	return h, raw, nil
}

// ClaimedSource is the client address a header carries, as "host:port".
// A LOCAL header (a health check of the balancer's own) and v1's UNKNOWN
// carry none: the spec says to use the connection's own peer, returned
// as it is. Only TCP over IPv4 or IPv6 is proxied here.
func ClaimedSource(h *proxyproto.Header, peer string) (string, error) {
	if h.Command.IsLocal() || h.TransportProtocol == proxyproto.UNSPEC {
		return peer, nil
	}
	if !h.TransportProtocol.IsStream() || !(h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		return "", fmt.Errorf("PROXY header for address family and protocol %#02x, not TCP over IP", byte(h.TransportProtocol))
	}
	src, ok := h.SourceAddr.(*net.TCPAddr)
	if !ok || src == nil {
		return "", fmt.Errorf("PROXY header without a TCP source address")
	}
	ap := src.AddrPort()
	if !ap.Addr().IsValid() {
		return "", fmt.Errorf("PROXY header source %v: not an address", src)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
}

// errSourceRefused: the supervisor refused the source the header named
// (its penalty, rate or cap); it logged why.
var errSourceRefused = errors.New("refused by its source's limits")

// takeProxyHeader reads a trusted load balancer's header within
// o.ProxyTimeout, tells the supervisor the source it names and waits for
// its word. On success o.Peer is the client's address and o.Log says
// so (the caller logged the balancer as "via"). On an error the connection is done
// (the caller hangs up).
func takeProxyHeader(nc net.Conn, sup *ipc.Conn, o *Options) error {
	timeout := o.ProxyTimeout
	if timeout <= 0 || timeout > o.LoginTimeout {
		timeout = o.LoginTimeout
	}
	if err := nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("PROXY header: %w", err)
	}
	h, _, err := ReadProxyHeader(nc)
	if derr := nc.SetReadDeadline(time.Time{}); derr != nil && err == nil {
		err = fmt.Errorf("PROXY header: clearing the read deadline: %w", derr)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("%w within proxy-protocol-timeout (%s): %w", ErrNoProxyHeader, timeout, err)
	}
	if err != nil {
		return err
	}
	src, err := ClaimedSource(h, o.Peer)
	if err != nil {
		return err
	}
	if err := sup.Send(ipc.Message{Kind: ipc.ProxyHeader, Peer: src}, nil); err != nil {
		return err
	}
	m, f, _, err := sup.Recv()
	if f != nil {
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("waiting for the supervisor: %w", err)
	}
	switch m.Kind {
	case ipc.ProxyAccepted:
		o.Log = o.Log.With("peer", src) // "via" (the balancer) is there already
		o.Peer = src
		return nil
	case ipc.Denied:
		o.Log = o.Log.With("peer", src) // "via" (the balancer) is there already
		if strings.HasPrefix(m.Reason, "disconnect: ") {
			tellXpraClient(nc, m.Reason)
		}
		return fmt.Errorf("%w: %s", errSourceRefused, strings.TrimSpace(m.Reason))
	}
	return fmt.Errorf("supervisor sent %q, want %q", m.Kind, ipc.ProxyAccepted)
}

// tellXpraClient writes line to a plain xpra client, as the supervisor
// tells a penalised direct one (its refuseWithNote): only when the
// client's first byte is an xpra header's 'P', which xpra 3.1 and 6.x
// clients then print; TLS and HTTP clients would take it for garbage.
func tellXpraClient(nc net.Conn, line string) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	// The balancer forwards the client's hello right behind its header.
	if AwaitFirstBytes(nc, time.Now().Add(time.Second)) != nil {
		return
	}
	var first [1]byte
	n := 0
	_ = rc.Read(func(fd uintptr) bool {
		n, _, _ = unix.Recvfrom(int(fd), first[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true
	})
	if n != 1 || first[0] != 'P' {
		return
	}
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(nc, line)
}
