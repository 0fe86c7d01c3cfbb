// SPDX-License-Identifier: GPL-2.0-or-later

package conn

import (
	"fmt"
	"net"

	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// WriteFrames forwards frames read from another connection as they came:
// same headers, same (decrypted) payloads, raw chunks before their main
// chunk, in one write. Only the AES layer is this side's own.
func (c *Conn) WriteFrames(frames ...wire.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	bufs := make(net.Buffers, 0, 2*len(frames))
	for _, f := range frames {
		h := f.Header
		h.Flags &^= wire.FlagCipher
		hdr, payload, err := c.seal(h, f.Payload)
		if err != nil {
			return err
		}
		if len(payload) < joinSize {
			bufs = append(bufs, append(hdr, payload...))
		} else {
			bufs = append(bufs, hdr, payload)
		}
	}
	n, err := bufs.WriteTo(c.writer())
	c.written.Add(n)
	if err != nil {
		return fmt.Errorf("forwarding %d frames: %w", len(frames), err)
	}
	return nil
}

// Plain returns a frame's payload decompressed (the payload itself when it
// is not compressed), bounded by max.
func Plain(f wire.Frame, max int) ([]byte, error) {
	if f.Header.Level == 0 {
		return f.Payload, nil
	}
	p, err := compress.Decompress(f.Header.Level, f.Payload, max)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", f.Header, err)
	}
	return p, nil
}

// DecodeFrames turns a main chunk and the raw chunks read before it into a
// packet, as ReadPacket would have.
func DecodeFrames(raws []wire.Frame, main wire.Frame, max int, announced packet.Aliases) (Packet, error) {
	var rc wire.RawChunks
	for _, f := range raws {
		data, err := Plain(f, max)
		if err != nil {
			return nil, err
		}
		if err := rc.Add(f.Header.Index, data); err != nil {
			return nil, err
		}
	}
	payload, err := Plain(main, max)
	if err != nil {
		return nil, err
	}
	p, err := Decode(main.Header.Encoding(), payload)
	if err != nil {
		return nil, err
	}
	if err := rc.Apply(p); err != nil {
		return nil, err
	}
	name, err := packet.Type(p, announced)
	if err != nil {
		return nil, err
	}
	p[0] = name
	return p, nil
}
