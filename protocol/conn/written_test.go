// SPDX-License-Identifier: GPL-2.0-or-later

package conn

import (
	"bytes"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Written counts every byte WritePacket and WriteFrames put on the stream.
func TestWritten(t *testing.T) {
	tests := []struct {
		name  string
		write func(*Conn) error
	}{
		{"small packet", func(c *Conn) error { return c.WritePacket(Packet{"ping", int64(1)}) }},
		{"packet with a raw chunk", func(c *Conn) error {
			return c.WritePacket(Packet{"draw", int64(1), make([]byte, RawChunkSize+5)})
		}},
		{"forwarded frames", func(c *Conn) error {
			return c.WriteFrames(wire.Frame{Header: wire.Header{Index: 1}, Payload: make([]byte, 100<<10)},
				wire.Frame{Header: wire.Header{Flags: wire.FlagRencode}, Payload: []byte{0xc0}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c := New(&out)
			for i := 1; i <= 2; i++ {
				if err := tt.write(c); err != nil {
					t.Fatal(err)
				}
				if c.Written() != int64(out.Len()) {
					t.Fatalf("after %d writes: Written() = %d, %d bytes on the stream", i, c.Written(), out.Len())
				}
			}
		})
	}
}
