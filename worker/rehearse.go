// SPDX-License-Identifier: GPL-2.0-or-later

package worker

import (
	"bytes"
	"fmt"

	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
	"github.com/xpra-proxy/xpra-proxy/relay"
)

// Rehearse goes once through what a relay does with the hellos of its
// connection (decode the hand-over, rewrite and encode the hello for the
// server, decode the server's, rewrite and encode it for the client) on
// hellos of its own, in memory. A warm relay, started ahead of its login,
// calls it before it waits: the first pass through that code costs the
// process its page faults (code and a growing heap), about 3 ms here,
// which would otherwise fall between the verdict and the server's hello
// (issue 17). Errors are ignored: it only warms.
func Rehearse() {
	hello := rehearsalHello()
	for _, enc := range []wire.Encoding{wire.Rencode, wire.RencodePlus} {
		blob, err := handover.State{Hello: hello, Encoding: enc}.Marshal()
		if err != nil {
			return
		}
		st, err := handover.Unmarshal(blob)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		c := conn.New(&buf)
		h := caps.ParseHello(st.Hello)
		if c.ApplyPeerHello(h, int(h.CompressionLevel)) != nil {
			return
		}
		form := h.Form()
		out := relay.ServerHello(st.Hello, relay.ServerHelloOptions{Username: h.Username,
			Digests: digest.Supported(), SaltDigests: digest.SupportedSalt(), UID: 1000, GID: 1000, Form: form})
		if c.WritePacket(conn.Packet{packet.Hello, out}) != nil {
			return
		}
		p, err := c.ReadPacket()
		if err != nil || len(p) < 2 {
			return
		}
		if d, ok := p[1].(value.Dict); ok {
			_ = c.WritePacket(conn.Packet{packet.Hello, relay.ClientHello(d, form, 1000, 1000)})
			_, _ = c.ReadPacket()
		}
	}
}

// rehearsalHello is a client hello of the usual shape and size: a few
// dozen capabilities and a keymap of a thousand keys, about 70 KB
// rencoded, as a 3.1.3 client's (its heap use is what the rehearsal must
// grow the heap to).
func rehearsalHello() value.Dict {
	names := func(prefix string, n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s-%d", prefix, i)
		}
		return out
	}
	d := value.Dict{
		{Key: "version", Value: "3.1.3"},
		{Key: "username", Value: "rehearsal"},
		{Key: "uuid", Value: "00000000000000000000000000000000"},
		{Key: "rencode", Value: true},
		{Key: "rencodeplus", Value: true},
		{Key: "encoders", Value: []any{"rencode", "bencode"}},
		{Key: "compressors", Value: []any{"lz4", "zlib"}},
		{Key: "lz4", Value: true},
		{Key: "zlib", Value: true},
		{Key: "compression_level", Value: int64(1)},
		{Key: "digest", Value: []any{"hmac", "hmac+sha256", "xor"}},
		{Key: "salt-digest", Value: []any{"xor", "hmac+sha256"}},
		{Key: "encodings", Value: names("encoding", 12)},
		{Key: "encodings.core", Value: names("encoding", 12)},
		{Key: "desktop_size", Value: []any{int64(1920), int64(1080)}},
		{Key: "screen_sizes", Value: []any{[]any{":0.0", int64(1920), int64(1080), int64(508), int64(285),
			[]any{[]any{"DP-1", int64(0), int64(0), int64(1920), int64(1080), int64(508), int64(285)}}}}},
		{Key: "platform", Value: "linux"},
		{Key: "build.revision", Value: "0"},
		{Key: "windows", Value: true},
		{Key: "keyboard", Value: true},
		{Key: "clipboard", Value: false},
		{Key: "notifications", Value: false},
		{Key: "sound.receive", Value: false},
	}
	for i := range 40 {
		d = append(d, value.Item{Key: fmt.Sprintf("encoding.option-%d", i), Value: int64(i)})
	}
	sub := value.Dict{}
	for i := range 1000 {
		sub = append(sub, value.Item{Key: fmt.Sprintf("keycode-%d", i), Value: names("keysym", 4)})
	}
	return append(d, value.Item{Key: "keymap", Value: sub})
}
