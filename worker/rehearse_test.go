// SPDX-License-Identifier: GPL-2.0-or-later

package worker

import (
	"bytes"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
	"github.com/xpra-proxy/xpra-proxy/relay"
)

// TestRehearsalGoesThrough: the rehearsal's hello takes every step
// Rehearse runs (were one refused, the rehearsal would warm nothing past
// it, silently).
func TestRehearsalGoesThrough(t *testing.T) {
	Rehearse() // must not panic
	blob, err := handover.State{Hello: rehearsalHello(), Encoding: wire.Rencode}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) < 50000 {
		t.Errorf("the rehearsal's hand-over is %d bytes, less than a real client's (~70 KB)", len(blob))
	}
	st, err := handover.Unmarshal(blob)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c := conn.New(&buf)
	h := caps.ParseHello(st.Hello)
	if err := c.ApplyPeerHello(h, int(h.CompressionLevel)); err != nil {
		t.Fatalf("the rehearsal's hello is refused: %v", err)
	}
	if err := c.WritePacket(conn.Packet{packet.Hello, relay.ServerHello(st.Hello, relay.ServerHelloOptions{Form: h.Form()})}); err != nil {
		t.Fatal(err)
	}
	p, err := c.ReadPacket()
	if err != nil || len(p) < 2 || p[0] != packet.Hello {
		t.Fatalf("reading the rehearsed hello back: %v %v", p, err)
	}
}
