// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// A compressed hello that inflates beyond the pre-auth decompressed limit
// is refused with a disconnect that names the limit; one within it (a
// version request here, which needs no supervisor) is answered, and so
// is an uncompressed one of any size within the packet limit (nothing
// to inflate). The
// largest real hello is ~67 KB (3.1.3's attach hello with its keymap).
func TestDecompressedLimit(t *testing.T) {
	const limit = 256 << 10
	tests := []struct {
		name         string
		pad          int // bytes of an incompressible-looking string in the hello
		compressed   bool
		decompressed int // Options.DecompressedLimit
		want         string
	}{
		{"real size, zlib", 70 << 10, true, limit, "hello"},
		{"just under, zlib", limit - 1024, true, limit, "hello"},
		{"over, zlib", limit + 1024, true, limit, "decompresses beyond 262144 bytes, the limit before authentication"},
		{"over, uncompressed: the packet limit bounds it", limit + 1024, false, limit, "hello"},
		{"no limit of its own: the packet limit", limit + 1024, true, 0, "hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			done := make(chan error, 1)
			go func() {
				_, _, err := Login(server, nil, Options{Listener: "tcp", Transport: "tcp", PacketLimit: 1 << 20,
					DecompressedLimit: tc.decompressed, LoginTimeout: 10 * time.Second,
					Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
				done <- err
			}()
			_ = client.SetDeadline(time.Now().Add(10 * time.Second))
			c := conn.New(client)
			if tc.compressed {
				c.SetCompression(compress.Zlib, 1)
			}
			raw := make([]byte, tc.pad/2)
			_, _ = rand.Read(raw)
			hello := conn.Packet{"hello", value.Dict{{Key: "version", Value: "3.1.3"},
				{Key: "request", Value: "version"}, {Key: "pad", Value: hex.EncodeToString(raw)}}}
			if err := c.WritePacket(hello); err != nil {
				t.Fatal(err)
			}
			p, err := c.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			got := text(p)
			if !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			client.Close()
			if err := <-done; tc.want == "hello" && err != nil {
				t.Errorf("Login: %v", err)
			}
		})
	}
}

// text is a packet's type, and for a disconnect its reason and details.
func text(p conn.Packet) string {
	out := []string{fmt.Sprintf("%s", p[0])}
	if out[0] == "disconnect" {
		for _, d := range p[1:] {
			out = append(out, fmt.Sprintf("%s", d))
		}
	}
	return strings.Join(out, " ")
}
