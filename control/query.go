// SPDX-License-Identifier: GPL-2.0-or-later

package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Limits of Query, which reads what a process of the same user sends: an
// info reply is a few KiB from our workers, some tens of KiB from a real
// xpra server.
const (
	queryTimeout    = 10 * time.Second // when ctx has no deadline
	queryReplyLimit = 4 << 20
	queryMaxPackets = 64 // pings and such before the reply
)

// Query connects to a control socket (or any xpra unix socket), sends the
// hello `xpra info` sends with request ("info", "version" or "stop") and
// returns the reply's capabilities. A refusal comes back as a
// *conn.DisconnectError carrying the server's reason; the disconnect that
// answers "stop" ("server shutdown") counts as success, with a nil dict.
func Query(ctx context.Context, path, request string) (value.Dict, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("control query: %w", err)
	}
	defer nc.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(queryTimeout)
	}
	_ = nc.SetDeadline(deadline)
	// Cancellation interrupts a blocked read or write.
	defer context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })()

	c := conn.New(nc)
	c.Reader().SetMaxSize(queryReplyLimit)
	c.SetMaxDecompressed(queryReplyLimit)
	if err := c.WritePacket(conn.Packet{packet.Hello, queryHello(request)}); err != nil {
		return nil, fmt.Errorf("control query: sending hello: %w", err)
	}
	for range queryMaxPackets {
		p, err := c.ReadPacket()
		if err != nil {
			var tm *wire.TextMessage
			if errors.As(err, &tm) {
				if reason, ok := tm.Disconnect(); ok {
					return nil, &conn.DisconnectError{Reason: reason}
				}
			}
			if ctx.Err() != nil {
				err = errors.Join(ctx.Err(), err)
			}
			return nil, fmt.Errorf("control query: reading reply: %w", err)
		}
		switch p[0] {
		case packet.Hello:
			var d value.Dict
			if len(p) >= 2 {
				d, _ = p[1].(value.Dict)
			}
			if d == nil {
				return nil, errors.New("control query: reply hello without capabilities")
			}
			return d, nil
		case packet.Disconnect:
			reason, details := packet.DisconnectReason(p)
			if request == "stop" && reason == packet.ReasonServerShutdown {
				return nil, nil
			}
			return nil, &conn.DisconnectError{Reason: reason, Details: details}
		}
	}
	return nil, fmt.Errorf("control query: no reply within %d packets", queryMaxPackets)
}

// queryHello is the part of a 3.1.3 `xpra info` hello that matters to a
// server answering a one-shot request (captured from the real client): no
// aliases, no password, nested info wanted.
func queryHello(request string) value.Dict {
	host, _ := os.Hostname()
	name := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	id := make([]byte, 20)
	_, _ = rand.Read(id)
	return value.Dict{
		{Key: "version", Value: DefaultVersion},
		{Key: "client_type", Value: "xpra-proxy"},
		{Key: "uuid", Value: hex.EncodeToString(id)},
		{Key: "username", Value: name},
		{Key: "name", Value: name},
		{Key: "hostname", Value: host},
		{Key: "rencode", Value: true},
		{Key: "bencode", Value: true},
		{Key: "encoders", Value: []any{"rencode", "bencode"}},
		{Key: "compressors", Value: []any{"zlib", "lz4"}},
		{Key: "zlib", Value: true},
		{Key: "lz4", Value: true},
		{Key: "compression_level", Value: int64(1)},
		{Key: "request", Value: request},
		{Key: request + "_request", Value: true},
		{Key: "info-namespace", Value: true},
		{Key: "namespace", Value: true},
		{Key: "ui_client", Value: false},
		{Key: "windows", Value: false},
		{Key: "wants_aliases", Value: false},
		{Key: "wants_encodings", Value: false},
		{Key: "wants_versions", Value: false},
		{Key: "wants_features", Value: false},
		{Key: "wants_sound", Value: false},
	}
}
