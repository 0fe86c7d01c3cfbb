// SPDX-License-Identifier: GPL-2.0-or-later

// Package fakexpra is a light stand-in for an xpra 3.1 server, for tests
// and benchmarks that need hundreds of sessions (a real 3.1.3 server
// costs ~100 MB): it answers a hello like one and then holds the
// connection, reading and dropping what comes, until the peer leaves.
package fakexpra

import (
	"io"
	"net"

	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// Hello is what the fake server says: a 3.1.3 server's main capabilities.
func Hello(name string) value.Dict {
	return value.Dict{{Key: "version", Value: "3.1.3"}, {Key: "rencode", Value: true},
		{Key: "encoders", Value: []any{"rencode", "bencode"}}, {Key: "compressors", Value: []any{"lz4", "zlib"}},
		{Key: "lz4", Value: true}, {Key: "uuid", Value: name}, {Key: "session-name", Value: name}}
}

// Serve answers every connection of l until l is closed.
func Serve(l net.Listener, name string) {
	for {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			c := conn.New(nc)
			if _, err := c.ReadPacket(); err != nil {
				return
			}
			if err := c.WritePacket(conn.Packet{packet.Hello, Hello(name)}); err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, nc)
		}()
	}
}
