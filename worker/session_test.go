// SPDX-License-Identifier: GPL-2.0-or-later

package worker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/xpraurl"
)

// A server whose reply is malformed gets the client a clean refusal, not a
// crashed worker.
// startHandshake runs a 3.1.3 client's relay between two pipes until the
// server end has read the relay's hello; done gets the relay's end.
func startHandshake(t *testing.T) (s *Session, client, server *conn.Conn, done chan error) {
	t.Helper()
	cl, cw := net.Pipe()
	sv, sw := net.Pipe()
	t.Cleanup(func() { cl.Close(); sv.Close() })
	hello := value.Dict{{Key: "version", Value: "3.1.3"}, {Key: "rencode", Value: true}}
	s = &Session{State: handover.State{Hello: hello}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.client, s.nc = conn.New(cw), cw
	s.hello = caps.ParseHello(hello)
	done = make(chan error, 1)
	go func() { done <- s.relay(context.Background(), cw, sw, xpraurl.Target{}) }()
	server = conn.New(sv)
	if p, err := server.ReadPacket(); err != nil || p[0] != packet.Hello {
		t.Fatalf("server got %v, %v", p, err)
	}
	return s, conn.New(cl), server, done
}

func TestRelayHandshakeBadServerHello(t *testing.T) {
	for name, reply := range map[string]conn.Packet{
		"hello without caps":  {packet.Hello},
		"hello caps not dict": {packet.Hello, int64(5)},
	} {
		t.Run(name, func(t *testing.T) {
			s, client, server, done := startHandshake(t)
			go server.WritePacket(reply)
			p, err := client.ReadPacket()
			if err != nil || p[0] != packet.Disconnect {
				t.Fatalf("client got %v, %v; want a disconnect", p, err)
			}
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("the handshake succeeded")
				}
				// The supervisor's record says why, and that nothing was relayed.
				if m := s.Ended(err); m.Kind != ipc.RelayEnded || !strings.HasPrefix(m.Reason, "refused: protocol error") || m.Figures != nil {
					t.Errorf("report %+v", m)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the relay did not return")
			}
		})
	}
}

// A server that refuses the login (a remote target's or a session host's
// wrong password) gets the client its reason, not "closed the connection".
func TestRelayHandshakeServerRefuses(t *testing.T) {
	s, client, server, done := startHandshake(t)
	go server.WritePacket(packet.NewDisconnect(packet.ReasonAuthFailed, "wrong token"))
	p, err := client.ReadPacket()
	if err != nil || p[0] != packet.Disconnect {
		t.Fatalf("client got %v, %v; want a disconnect", p, err)
	}
	if reason, details := packet.DisconnectReason(p); reason != packet.ReasonAuthFailed || len(details) != 1 || details[0] != "wrong token" {
		t.Fatalf("client told %q %q, want the server's refusal", reason, details)
	}
	select {
	case err := <-done:
		if m := s.Ended(err); !strings.HasPrefix(m.Reason, "refused: "+packet.ReasonAuthFailed) {
			t.Errorf("report %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not return")
	}
}
