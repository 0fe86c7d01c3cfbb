package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/bufpool"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Timing of the proxy's own pings (reference: 5 s interval, 90 s timeout).
const (
	PingInterval = 5 * time.Second
	PingTimeout  = 90 * time.Second
)

// Leg is one side of a relayed connection.
type Leg struct {
	Name  string // "client" or "server", for logs and disconnect reasons
	Net   net.Conn
	Conn  *conn.Conn
	Form  caps.Form // the peer's caps layout
	bytes atomic.Int64
	echo  atomic.Int64 // unix ms of the last echo of one of our pings
	pings bool         // the peer echoes our pings (3.1: it said ping-echo-sourceid)
}

// NewLeg wraps a connection.
func NewLeg(name string, nc net.Conn, c *conn.Conn) *Leg {
	l := &Leg{Name: name, Net: nc, Conn: c}
	l.echo.Store(time.Now().UnixMilli())
	return l
}

// Bytes is how many bytes were read from this leg's peer.
func (l *Leg) Bytes() int64 { return l.bytes.Load() }

// Relay moves packets between an authenticated client and its server.
type Relay struct {
	Client, Server *Leg
	UUID           string // ours, carried in our pings so we recognise the echoes
	Log            *slog.Logger
	ProxyInfo      func() value.Dict // added to info-response under "proxy"

	maxSize      int
	pingEvery    time.Duration
	pingDeadline time.Duration
	stopOnce     sync.Once
	stopped      chan struct{}
	reason       string
}

// NewRelay prepares a relay between two legs whose hellos are done.
func NewRelay(client, server *Leg, log *slog.Logger) *Relay {
	var id [16]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read does not fail on Linux
	return &Relay{
		Client: client, Server: server, Log: log,
		UUID:    hex.EncodeToString(id[:]),
		maxSize: wire.AbsMaxSize, pingEvery: PingInterval, pingDeadline: PingTimeout,
		stopped: make(chan struct{}),
	}
}

// Run relays until either side goes away, a disconnect passes, ctx ends
// or a ping times out. It returns the reason the relay stopped.
func (r *Relay) Run(ctx context.Context) string {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); r.pump(r.Client, r.Server) }()
	go func() { defer wg.Done(); r.pump(r.Server, r.Client) }()
	go func() { defer wg.Done(); r.pinger(ctx) }()
	select {
	case <-ctx.Done():
		r.Stop(r.Client, "proxy stopping", true)
	case <-r.stopped:
	}
	// Unblock the pumps: both sockets close once the disconnects are out.
	_ = r.Client.Net.Close()
	_ = r.Server.Net.Close()
	wg.Wait()
	return r.reason
}

// Stop ends the relay once. Unless the peer already said goodbye, each side
// that did not cause the stop is told why, as the reference does.
func (r *Relay) Stop(cause *Leg, reason string, tellBoth bool) {
	r.stopOnce.Do(func() {
		r.reason = reason
		for _, l := range []*Leg{r.Client, r.Server} {
			if l != cause || tellBoth {
				_ = l.Net.SetWriteDeadline(time.Now().Add(time.Second))
				_ = l.Conn.WritePacket(packet.NewDisconnect(packet.ReasonServerShutdown, reason))
			}
		}
		close(r.stopped)
	})
}

// outgoing is a frame to forward as it came, or a packet the relay
// rewrote (info-response).
type outgoing struct {
	frame  wire.Frame
	packet conn.Packet
}

// queueDepth bounds the frames read from one side and not yet written to
// the other: reading the next frame overlaps writing this one, and a slow
// receiver pushes back on the sender instead of filling memory (the
// reference's queues are unbounded).
const queueDepth = 8

// eagerAlloc: after authentication, frames up to this size (a draw's pixels)
// are read into one buffer sized from the header.
const eagerAlloc = 4 << 20

// pump forwards src's frames to dst, acting on the few packet types the
// proxy owns and passing everything else through as bytes. Raw chunks go
// on at once: only main chunks are inspected, and none of the packets the
// proxy consumes (pings' echoes, disconnects) carries raw chunks.
func (r *Relay) pump(src, dst *Leg) {
	queue := make(chan outgoing, queueDepth)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for o := range queue {
			var err error
			if o.packet != nil {
				err = dst.Conn.WritePacket(o.packet)
			} else {
				err = dst.Conn.WriteFrames(o.frame)
				bufpool.Put(o.frame.Payload) // written: nothing refers to it any more
			}
			if err != nil {
				r.Stop(dst, dst.Name+" connection lost", false)
				for range queue {
				}
				return
			}
		}
	}()
	defer func() {
		if queue != nil {
			close(queue)
			<-writerDone
		}
	}()
	send := func(f wire.Frame) bool {
		select {
		case queue <- outgoing{frame: f}:
			return true
		case <-r.stopped:
			return false
		}
	}
	rd := src.Conn.Reader()
	rd.SetEagerAlloc(eagerAlloc, bufpool.Get)
	pendingRaw := 0 // raw chunks forwarded ahead of the next main chunk
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
				r.Stop(src, src.Name+" connection lost", false)
			default:
				r.Log.Warn("relay read failed", "from", src.Name, "err", err)
				r.Stop(src, fmt.Sprintf("%s protocol error: %v", src.Name, err), false)
			}
			return
		}
		src.bytes.Add(int64(wire.HeaderSize + len(f.Payload)))
		if f.Header.Index > 0 {
			if pendingRaw == wire.MaxPendingRaw {
				r.Stop(src, src.Name+" sent too many raw packets", false)
				return
			}
			// Only counted: its buffer is recycled once written, so a main
			// chunk with raw chunks is never decoded (none of the packets
			// the proxy acts on has any).
			pendingRaw++
			if !send(f) {
				return
			}
			continue
		}
		forward, rewritten, err := r.inspect(src, pendingRaw > 0, f)
		if rewritten != nil {
			// In order with what was queued before it.
			select {
			case queue <- outgoing{packet: rewritten}:
			case <-r.stopped:
				return
			}
		}
		var bye *peerDisconnect
		if errors.As(err, &bye) {
			// Pass the peer's goodbye on after what was queued before it.
			if send(f) {
				close(queue)
				<-writerDone
				queue = nil
			}
			r.stopOnce.Do(func() {
				r.reason = bye.reason
				close(r.stopped)
			})
			return
		}
		if err != nil {
			r.Log.Warn("relay packet failed", "from", src.Name, "err", err)
			r.Stop(src, fmt.Sprintf("%s protocol error: %v", src.Name, err), false)
			return
		}
		if forward && !send(f) {
			return
		}
		pendingRaw = 0
	}
}

// inspect looks at a main chunk's packet type and handles the packets the
// proxy owns. It reports whether the frames should be forwarded untouched,
// or returns the packet to send in their place.
func (r *Relay) inspect(src *Leg, hasRaw bool, f wire.Frame) (bool, conn.Packet, error) {
	payload, err := conn.Plain(f, r.maxSize)
	if err != nil {
		return false, nil, err
	}
	name, _, err := conn.PeekType(f.Header.Encoding(), payload)
	if err != nil {
		return false, nil, err
	}
	switch name {
	case packet.PingEcho, packet.InfoResponse:
		if hasRaw {
			return true, nil, nil // not ours to decode: see pump
		}
	case packet.Disconnect:
		if hasRaw {
			return false, nil, &peerDisconnect{fmt.Sprintf("disconnect from %s", src.Name)}
		}
	default:
		return true, nil, nil // an aliased type (int) is forwarded as it is, too
	}
	p, err := conn.DecodeFrames(nil, f, r.maxSize, packet.Aliases{})
	if err != nil {
		return false, nil, err
	}
	switch name {
	case packet.PingEcho:
		if len(p) >= 7 {
			if sid, _ := value.AsString(p[6]); sid == r.UUID {
				src.echo.Store(time.Now().UnixMilli())
				return false, nil, nil
			}
		}
		return true, nil, nil
	case packet.InfoResponse:
		if src != r.Server || len(p) < 2 || r.ProxyInfo == nil {
			return true, nil, nil
		}
		d, ok := p[1].(value.Dict)
		if !ok {
			return true, nil, nil
		}
		d = append(d, value.Item{Key: "proxy", Value: r.ProxyInfo()})
		p[1] = d
		return false, p, nil
	case packet.Disconnect:
		reason, details := packet.DisconnectReason(p)
		return false, nil, &peerDisconnect{fmt.Sprintf("disconnect from %s: %s %v", src.Name, reason, details)}
	}
	return true, nil, nil
}

// peerDisconnect is how inspect tells pump that a side said goodbye.
type peerDisconnect struct{ reason string }

func (e *peerDisconnect) Error() string { return e.reason }

// pinger sends the proxy's own pings to both sides and stops the relay
// when echoes stop coming.
func (r *Relay) pinger(ctx context.Context) {
	t := time.NewTicker(r.pingEvery)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.stopped:
			return
		case now := <-t.C:
			for _, l := range []*Leg{r.Client, r.Server} {
				if !l.pings {
					continue
				}
				if now.Sub(time.UnixMilli(l.echo.Load())) > r.pingDeadline {
					r.Stop(l, "proxy to "+l.Name+" ping timeout", false)
					return
				}
				mono := int64(now.Sub(start) / time.Millisecond)
				if err := l.Conn.WritePacket(conn.Packet{packet.Ping, mono, now.UnixMilli(), r.UUID}); err != nil {
					r.Stop(l, l.Name+" connection lost", false)
					return
				}
			}
		}
	}
}

// EnablePings turns on the proxy's pings towards a leg whose hello says it
// echoes a ping's source id (3.1: "ping-echo-sourceid"; 6.x always does).
func (l *Leg) EnablePings(h caps.Caps) {
	l.pings = h.Bool("ping-echo-sourceid", false) || l.Form == caps.Nested
}
