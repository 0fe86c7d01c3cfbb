package worker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// relayFixture joins a fake client and a fake server through a Relay over
// in-memory pipes.
func relayFixture(t *testing.T, tune ...func(*Relay)) (client, server *conn.Conn, r *Relay, done chan string) {
	t.Helper()
	c1, c2 := net.Pipe()
	s1, s2 := net.Pipe()
	cl := NewLeg("client", c2, conn.New(c2))
	sv := NewLeg("server", s2, conn.New(s2))
	sv.EnablePings(caps.New(value.Dict{{Key: "ping-echo-sourceid", Value: true}}))
	r = NewRelay(cl, sv, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.pingEvery = 20 * time.Millisecond
	r.ProxyInfo = func() value.Dict { return value.Dict{{Key: "version", Value: Version}} }
	for _, f := range tune {
		f(r)
	}
	done = make(chan string, 1)
	go func() { done <- r.Run(context.Background()) }()
	t.Cleanup(func() { c1.Close(); s1.Close() })
	return conn.New(c1), conn.New(s1), r, done
}

// The relay's own pings reach a side that echoes source ids, and their
// echoes stop at the relay; other packets pass both ways; info-response
// gains the proxy's entry; a disconnect is passed on and ends the relay.
func TestRelay(t *testing.T) {
	client, server, r, done := relayFixture(t)

	// Our ping arrives at the server; its echo must not reach the client.
	p, err := server.ReadPacket()
	if err != nil || p[0] != packet.Ping || len(p) < 4 {
		t.Fatalf("server got %v (%v), want the relay's ping", p, err)
	}
	if sid, _ := value.AsString(p[3]); sid != r.UUID {
		t.Fatalf("ping source id %q, want the relay's %q", sid, r.UUID)
	}
	go server.WritePacket(conn.Packet{packet.PingEcho, p[1], int64(0), int64(0), int64(0), int64(0), r.UUID})

	// Ordinary traffic, server to client, including info-response.
	go func() {
		server.WritePacket(conn.Packet{"cursor", []byte{1, 2, 3}})
		server.WritePacket(conn.Packet{packet.InfoResponse, value.Dict{{Key: "server.mode", Value: "x11"}}})
	}()
	got, err := client.ReadPacket()
	if err != nil || got[0] != "cursor" {
		t.Fatalf("client got %v (%v), want the cursor (the echo must have been consumed)", got, err)
	}
	got, err = client.ReadPacket()
	if err != nil || got[0] != packet.InfoResponse {
		t.Fatalf("client got %v (%v), want info-response", got, err)
	}
	info := caps.New(got[1].(value.Dict))
	if info.Str("server.mode", "") != "x11" || info.Sub("proxy").Str("version", "") != Version {
		t.Fatalf("info-response %v lacks the server's or the proxy's entries", got[1])
	}

	// Client to server, then the client says goodbye.
	go func() {
		client.WritePacket(conn.Packet{"key-action", int64(1), "a"})
		client.WritePacket(packet.NewDisconnect(packet.ReasonClientRequest, "bye"))
	}()
	for {
		got, err = server.ReadPacket()
		if err != nil {
			t.Fatalf("server: %v", err)
		}
		if got[0] == packet.Ping {
			continue // more of the relay's pings
		}
		break
	}
	if got[0] != "key-action" {
		t.Fatalf("server got %v, want key-action", got)
	}
	for {
		got, err = server.ReadPacket()
		if err != nil {
			t.Fatalf("server: %v", err)
		}
		if got[0] != packet.Ping {
			break
		}
	}
	if got[0] != packet.Disconnect {
		t.Fatalf("server got %v, want the client's disconnect", got)
	}
	select {
	case reason := <-done:
		if reason != "disconnect from client: client request [bye]" {
			t.Fatalf("relay stopped with %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not stop after the disconnect")
	}
}

// A side that stops echoing the relay's pings is dropped with the
// reference's reason.
func TestRelayPingTimeout(t *testing.T) {
	client, server, _, done := relayFixture(t, func(r *Relay) { r.pingDeadline = 100 * time.Millisecond })
	go func() { // drain without echoing
		for {
			if _, err := server.ReadPacket(); err != nil {
				return
			}
		}
	}()
	go func() {
		for {
			if _, err := client.ReadPacket(); err != nil {
				return
			}
		}
	}()
	select {
	case reason := <-done:
		if reason != "proxy to server ping timeout" {
			t.Fatalf("relay stopped with %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ping timeout")
	}
}
