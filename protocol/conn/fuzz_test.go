// SPDX-License-Identifier: GPL-2.0-or-later

package conn

import (
	"bytes"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/hostile"
	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"io"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// FuzzReadPacket runs arbitrary bytes through the whole receive path a
// proxy leg uses: framing, raw chunks, decompression, decoding, aliases.
// Seeds are the real captures. Nothing may panic, and no packet may come
// out larger than the limits allow.
func FuzzReadPacket(f *testing.F) {
	for _, b := range shared.TraceSeeds(f, "[a-d]*.bin") {
		if len(b) < 64<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte("P\x01\x00\x00\x00\x00\x00\x09\xc2\x84ping\x3f\x03\xe8"))
	f.Add([]byte("disconnect: go away\n"))
	// Issue 12's amplification inputs and deep nesting.
	inputs, err := hostile.Inputs()
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range inputs {
		f.Add(in.Wire)
	}
	const max = 1 << 20
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, 16<<20, func() {
			c := New(rw{bytes.NewReader(in), io.Discard})
			c.Reader().SetMaxSize(max)
			c.SetMaxDecompressed(max)
			// A quarter of a pre-auth budget: each of the few packets an
			// input this small can hold stays within the bound above.
			c.SetBudget(budget.Limits{Bytes: 2 * max, Items: max / 32, Depth: 32})
			c.SetAnnouncedAliases(packet.NewAliases("hello", "ping", "ping_echo"))
			for range 64 {
				p, err := c.ReadPacket()
				if err != nil {
					return
				}
				if len(p) == 0 {
					t.Fatal("empty packet returned without error")
				}
			}
		})
	})
}

// FuzzPeekType checks the allocation-free type peek against the full
// decoder: when both succeed they agree.
func FuzzPeekType(f *testing.F) {
	f.Add(byte(wire.Rencode), []byte("\xc2\x84ping\x3f\x03\xe8"))
	f.Add(byte(wire.RencodePlus), []byte("\xc2\x01\x05"))
	f.Add(byte(wire.Bencode), []byte("l4:pingi1000ee"))
	f.Fuzz(func(t *testing.T, enc byte, payload []byte) {
		fuzzcheck.Bounded(t, 16<<20, func() {
			e := wire.Encoding(enc % 3)
			name, alias, err := PeekType(e, payload)
			if err != nil {
				return
			}
			p, derr := Decode(e, payload)
			if derr != nil || len(p) == 0 {
				return // peeking reads only the head of the packet
			}
			switch v := p[0].(type) {
			case string:
				if v != name {
					t.Fatalf("peek %q, decode %q", name, v)
				}
			case int64:
				if alias != v {
					t.Fatalf("peek alias %d, decode %d", alias, v)
				}
			}
		})
	})
}
