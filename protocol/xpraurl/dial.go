// SPDX-License-Identifier: GPL-2.0-or-later

package xpraurl

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/xpra-proxy/xpra-proxy/protocol/websocket"
)

// ErrLocalDisplay: a bare display (":10") names a session to look up in
// the socket directories first (package sockdir), not an address.
var ErrLocalDisplay = errors.New("xpraurl: a local display has no address of its own")

// Dial opens the stream of an xpra connection to t: TCP, a unix socket,
// or TCP with a websocket handshake ("binary", frames masked as a client's).
func (t Target) Dial(ctx context.Context) (net.Conn, error) {
	return t.DialFrom(ctx, nil)
}

// DialFrom is Dial from a given local address for TCP (nil: the system's
// choice). Tests use loopback addresses to appear as several sources.
func (t Target) DialFrom(ctx context.Context, local *net.TCPAddr) (net.Conn, error) {
	var d net.Dialer
	switch t.Scheme {
	case "tcp", "ws":
		if local != nil {
			d.LocalAddr = local
		}
		c, err := d.DialContext(ctx, "tcp", t.Address())
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", t.Address(), err)
		}
		if t.Scheme == "tcp" {
			return c, nil
		}
		wc, err := websocket.Dial(ctx, c, t.Address(), "/")
		if err != nil {
			c.Close()
			return nil, err
		}
		return wc, nil
	case "socket":
		c, err := d.DialContext(ctx, "unix", t.SocketPath)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", t.SocketPath, err)
		}
		return c, nil
	case "":
		return nil, ErrLocalDisplay
	}
	return nil, fmt.Errorf("xpraurl: %s connections are not supported yet", t.Scheme)
}
