// SPDX-License-Identifier: GPL-2.0-or-later

package worker

import (
	"net"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// The proxy's own info answer is flat for a 3.1 client (as 3.1.3's server
// flattens it) and nested for a 6.x client (as 6.5.3 sends it), with the
// version of the client's dialect.
func TestAnswerInfoShape(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hello   value.Dict
		nested  bool
		version string
	}{
		{"3.1", value.Dict{{Key: "version", Value: "3.1.3"}, {Key: "rencode", Value: true}}, false, "3.1.3"},
		{"6.x", value.Dict{{Key: "version", Value: "6.5"}, {Key: "encoders", Value: []any{"rencodeplus"}}}, true, "6.5.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			s := &Session{Launch: launch.Launch{Username: "alice", Displays: []string{":10"}}, nc: a, client: conn.New(a)}
			s.hello = caps.ParseHello(tc.hello)
			if err := s.client.ApplyPeerHello(s.hello, 0); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { errc <- s.answer(a, "info"); a.Close() }()
			p, err := conn.New(b).ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			b.Close() // the client hangs up once it has its answer
			if err := <-errc; err != nil {
				t.Fatalf("answer: %v", err)
			}
			d := p[1].(value.Dict)
			_, flat := d.Get("server.type")
			srv, hasServer := d.Get("server")
			if flat == tc.nested || hasServer != tc.nested {
				t.Fatalf("info %v: flat server.type %v, nested server %v; want nested=%v", d, flat, hasServer, tc.nested)
			}
			c := caps.New(d)
			if c.Str("server.type", "") != "xpra-proxy" || c.Str("proxy.user", "") != "alice" ||
				c.Str("sessions.0.display", "") != ":10" || c.Str("version", "") != tc.version {
				t.Fatalf("info %v (server %v)", d, srv)
			}
		})
	}
}
