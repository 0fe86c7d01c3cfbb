// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// TestVersionPerDialect: a version request is answered with the release
// of the client's own dialect, in its encoding: 3.1.3 to a rencode or
// bencode client, 6.5.3 to a rencodeplus one (version.For).
func TestVersionPerDialect(t *testing.T) {
	for _, tc := range []struct {
		name     string
		encoders []any
		enc      wire.Encoding
		want     string
	}{
		{"3.1 client (rencode)", []any{"rencode", "bencode"}, wire.Rencode, "3.1.3"},
		{"bencode only", []any{"bencode"}, wire.Bencode, "3.1.3"},
		{"6.x client (rencodeplus)", []any{"rencodeplus"}, wire.RencodePlus, "6.5.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			done := make(chan error, 1)
			go func() {
				_, _, err := Login(server, nil, Options{LoginTimeout: 10 * time.Second, PacketLimit: 1 << 20,
					Log: slog.New(slog.DiscardHandler)})
				server.Close()
				done <- err
			}()
			c := conn.New(client)
			if err := c.SetEncoding(tc.enc); err != nil {
				t.Fatal(err)
			}
			client.SetDeadline(time.Now().Add(10 * time.Second))
			hello := value.Dict{{Key: "version", Value: "x"}, {Key: "encoders", Value: tc.encoders},
				{Key: "request", Value: "version"}, {Key: "version_request", Value: true}}
			if err := c.WritePacket(conn.Packet{packet.Hello, hello}); err != nil {
				t.Fatal(err)
			}
			p, err := c.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			d, _ := p[1].(value.Dict)
			v, _ := d.Get("version")
			if s, _ := value.AsString(v); p[0] != packet.Hello || s != tc.want {
				t.Fatalf("answer %v, want version %q", p, tc.want)
			}
			client.Close() // the client hangs up first, as xpra's do
			if err := <-done; err != nil {
				t.Fatalf("login: %v", err)
			}
		})
	}
}
