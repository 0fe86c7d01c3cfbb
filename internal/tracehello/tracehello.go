// SPDX-License-Identifier: GPL-2.0-or-later

// Package tracehello gives tests the hellos of the real captures in
// ../shared/xpra/traces, decoded, to seed the fuzz targets of code that
// reads a hello dict rather than bytes off the wire.
package tracehello

import (
	"bytes"
	"io"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// captures hold every kind of hello 3.1.3 sends: version and info
// requests, a first and a second (challenge answer) hello, an attach, the
// servers' replies, and the HTML5 client's bencode hellos (f1 unframed).
var captures = []string{
	"a1-version-direct.1.c2s.bin", "a2-hello-direct.*.bin", "b1-info-password-ok.1.*.bin",
	"c1-info-noauth.1.c2s.bin", "decoded/f1-html5-ws-via-proxy.client-proxy.*.unframed.bin",
}

// Hellos returns the hello dicts of the captures, in capture order. A
// missing capture fails under CI and is logged elsewhere
// (shared.TraceSeeds).
func Hellos(tb testing.TB) []value.Dict {
	tb.Helper()
	var out []value.Dict
	for _, stream := range shared.TraceSeeds(tb, captures...) {
		c := conn.New(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(stream), io.Discard})
		for {
			p, err := c.ReadPacket()
			if err != nil {
				break
			}
			// By name, or as the alias 1 a server uses for its hello
			// when the client offered it (a2).
			name, _ := value.AsString(p[0])
			if len(p) < 2 || (name != packet.Hello && p[0] != any(int64(1))) {
				continue
			}
			if d, ok := p[1].(value.Dict); ok {
				out = append(out, d)
			}
		}
	}
	return out
}
