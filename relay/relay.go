// SPDX-License-Identifier: GPL-2.0-or-later

// Package relay is the relay engine of a connection's worker: it moves
// xpra packets between the client and the session once both hellos are
// done (relay.go, with large chunks spliced in the kernel:
// splice_linux.go), and rewrites the hellos on the way in (hello.go). It
// parses only what it must to answer pings and see disconnects.
package relay

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
	Name string // "client" or "server", for logs and disconnect reasons
	Net  net.Conn
	Conn *conn.Conn
	Form caps.Form // the peer's caps layout
	// CutThrough lets large raw chunks move between this leg's socket and
	// the other's in the kernel (splice) instead of through the relay's
	// memory. NewLeg sets it when Net is a TCP or unix stream socket. It
	// requires that Conn reads from Net with nothing in between but its
	// own buffer (a prefix that its first read takes whole is fine), writes
	// to Net, and neither encrypts nor decrypts; clear it otherwise.
	CutThrough bool

	read     atomic.Int64 // bytes read from the peer while relaying
	direct   atomic.Int64 // bytes written to the peer's socket directly (frames, a cut's head)
	spliced  atomic.Int64 // bytes spliced to the peer's socket
	written0 int64        // Conn.Written() when the leg was made
	echo     atomic.Int64 // unix ms of the last echo of one of our pings
	pings    bool         // the peer echoes our pings (3.1: it said ping-echo-sourceid)

	// readAheads counts the reader's changes between cutReadAhead and
	// bigReadAhead (each one a new buffer), for tests.
	readAheads atomic.Int64

	// wlock is held by whoever writes to the peer (frames, a spliced
	// chunk, pings, the goodbye), so nothing lands inside a chunk; a
	// channel, so that waiting for it can give up.
	wlock   chan struct{}
	waiters atomic.Int32 // pingers and goodbyes waiting for wlock: the relay lets go at the next packet's end
	torn    bool         // guarded by wlock: a write failed, maybe mid-chunk; nothing more may follow
}

// lockOr takes the write side, or gives up when give is ready; it marks
// the caller as waiting meanwhile, so a busy relay lets go between
// packets.
func (l *Leg) lockOr(give <-chan time.Time, stop <-chan struct{}) (locked, gave bool) {
	l.waiters.Add(1)
	defer l.waiters.Add(-1)
	select {
	case l.wlock <- struct{}{}:
		return true, false
	case <-give:
		return false, true
	case <-stop:
		return false, false
	}
}

// NewLeg wraps a connection whose hellos are done.
func NewLeg(name string, nc net.Conn, c *conn.Conn) *Leg {
	l := &Leg{Name: name, Net: nc, Conn: c, CutThrough: streamSocket(nc) != nil,
		written0: c.Written(), wlock: make(chan struct{}, 1)}
	l.echo.Store(time.Now().UnixMilli())
	return l
}

// BytesRead is how many bytes the relay has read from this leg's peer.
func (l *Leg) BytesRead() int64 { return l.read.Load() }

// BytesWritten is how many bytes the relay has written to this leg's peer:
// forwarded frames, spliced chunks and the relay's own packets.
func (l *Leg) BytesWritten() int64 {
	return l.Conn.Written() - l.written0 + l.direct.Load() + l.spliced.Load()
}

// Bytes is BytesRead.
func (l *Leg) Bytes() int64 { return l.BytesRead() }

func (l *Leg) unlock() { <-l.wlock }

// writeLocked runs fn, the write side held, unless an earlier write
// failed; a failure leaves the leg torn.
func (l *Leg) writeLocked(fn func() error) error {
	if l.torn {
		return errTorn
	}
	err := fn()
	if err != nil {
		l.torn = true
	}
	return err
}

// errTorn: an earlier write to the peer failed, possibly inside a chunk.
var errTorn = errors.New("an earlier write failed")

// Relay moves packets between an authenticated client and its server.
type Relay struct {
	Client, Server *Leg
	UUID           string // ours, carried in our pings so we recognise the echoes
	Log            *slog.Logger
	ProxyInfo      func() value.Dict // added to info-response under "proxy"

	// SpliceMin: a raw chunk with at least this many payload bytes not
	// yet read ahead goes cut-through (DefaultSpliceMin; 0 or less: never).
	SpliceMin int

	maxSize      int
	pingEvery    time.Duration
	pingDeadline time.Duration
	stopOnce     sync.Once
	stopped      chan struct{}
	reason       string
}

// New prepares a relay between two legs whose hellos are done.
func New(client, server *Leg, log *slog.Logger) *Relay {
	var id [16]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read does not fail on Linux
	return &Relay{
		Client: client, Server: server, Log: log,
		UUID:    hex.EncodeToString(id[:]),
		maxSize: wire.AbsMaxSize, SpliceMin: DefaultSpliceMin, pingEvery: PingInterval, pingDeadline: PingTimeout,
		stopped: make(chan struct{}),
	}
}

// Run relays until either side goes away, a disconnect passes, ctx ends
// or a ping times out. It returns the reason the relay stopped.
func (r *Relay) Run(ctx context.Context) string {
	var wg sync.WaitGroup
	start := time.Now()
	for _, fn := range []func(){
		func() { r.pump(r.Client, r.Server) },
		func() { r.pump(r.Server, r.Client) },
		// One pinger per leg: a peer that stops reading blocks only its own.
		func() { r.pinger(ctx, r.Client, start) },
		func() { r.pinger(ctx, r.Server, start) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
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
				r.goodbye(l, reason)
			}
		}
		close(r.stopped)
	})
}

// goodbye sends a disconnect within a second. A write in progress fails at
// the same deadline; a chunk still being spliced whose source stalled
// keeps the write side, and that peer gets no goodbye.
func (r *Relay) goodbye(l *Leg, reason string) {
	deadline := time.Now().Add(time.Second)
	_ = l.Net.SetWriteDeadline(deadline)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	if locked, _ := l.lockOr(t.C, nil); !locked {
		return
	}
	defer l.unlock()
	_ = l.writeLocked(func() error {
		return l.Conn.WritePacket(packet.NewDisconnect(packet.ReasonServerShutdown, reason))
	})
}

// outgoing is a frame to forward as it came, a packet the relay rewrote
// (info-response), or a raw chunk to forward cut-through.
type outgoing struct {
	frame  wire.Frame
	packet conn.Packet
	cut    *cut
}

// raw reports whether o is a raw chunk, which its packet's main chunk
// must follow with nothing in between.
func (o outgoing) raw() bool { return o.cut != nil || (o.packet == nil && o.frame.Header.Index > 0) }

// cut is a raw chunk whose header has been read and whose payload is
// still in the source: head is what the source's reader had read ahead
// of it (in the reader's own buffer), rest is still in the socket. A cut
// that went through the queue is answered on done: nil, the source's
// error, or errWriterStopped.
type cut struct {
	header wire.Header
	head   []byte
	rest   int
	done   chan error
}

// errWriterStopped: the writer failed and has stopped the relay itself.
var errWriterStopped = errors.New("writer stopped")

// queueDepth bounds the frames read from one side and not yet written to
// the other, in the writer's queue or held back by the reader: a slow
// receiver pushes back on the sender instead of filling memory (the
// reference's queues are unbounded).
const queueDepth = 8

// eagerAlloc: after authentication, frames up to this size (a draw's pixels)
// are read into one buffer sized from the header.
const eagerAlloc = 4 << 20

// DefaultSpliceMin: a raw chunk with at least this many payload bytes not
// yet read ahead by the reader moves cut-through between plain sockets;
// below it, the extra system calls cost more than the copies they save
// (BENCHMARKS.md, "Relaying a draw flood", has the measurements).
const DefaultSpliceMin = 16 << 10

// cutReadAhead is the source reader's read-ahead between plain sockets.
// While the raw chunks coming are large it reads less ahead
// (bigReadAhead): what it reads of a chunk that goes cut-through is
// copied in and out again instead of spliced. Smaller chunks want the
// larger read-ahead, which reads them, and their main chunks, whole.
const (
	cutReadAhead = 16 << 10
	bigReadAhead = 4 << 10
	bigRun       = 4 // large raw chunks in a row before reading less ahead
	smallRun     = 2 // other raw chunks in a row before reading more again
)

// pump forwards src's frames to dst, acting on the few packet types the
// proxy owns and passing everything else through as bytes. Raw chunks go
// on at once: only main chunks are inspected, and none of the packets the
// proxy consumes (pings' echoes, disconnects) carries raw chunks. Large
// raw chunks between two plain sockets go cut-through: their header is
// written, then the payload is spliced from one socket to the other,
// after everything read before it.
func (r *Relay) pump(src, dst *Leg) {
	o := &output{r: r, src: src, dst: dst, queue: make(chan outgoing, queueDepth),
		batch: make([]outgoing, 0, queueDepth), done: make(chan error, 1)}
	if src.CutThrough && dst.CutThrough {
		o.sp = newSplicer(src.Net, dst.Net)
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		defer o.sp.close()
		r.writer(src, dst, o.sp, o.queue, &o.pending)
	}()
	queueOpen := true
	defer func() {
		o.release()
		if queueOpen {
			close(o.queue)
			<-writerDone
		}
	}()
	rd := src.Conn.Reader()
	rd.SetEagerAlloc(eagerAlloc, bufpool.Get)
	pendingRaw := 0 // raw chunks forwarded ahead of the next main chunk
	// What the reader reads ahead of a cut is copied out again: it reads
	// little ahead between plain sockets, once it has read something (its
	// first read took the whole of any prefix, see Leg.CutThrough) and
	// nothing is buffered (so nothing is carried over).
	shrink, started := o.sp != nil && r.SpliceMin > 0, false
	readAhead, want, big, small := 0, cutReadAhead, 0, 0
	// Large: still cut through with little read ahead of it.
	bigChunk := r.SpliceMin + 2*bigReadAhead
	for {
		// Frames held back go out before a read that may wait.
		if rd.Buffered() < wire.HeaderSize && !o.flush() {
			return
		}
		if shrink && started && want != readAhead && rd.SetReadAhead(want) {
			if readAhead != 0 {
				src.readAheads.Add(1)
			}
			readAhead = want
		}
		started = true
		h, n, err := rd.ReadHeader()
		if err != nil {
			r.readFailed(src, err)
			return
		}
		src.read.Add(wire.HeaderSize)
		if h.Index > 0 {
			if pendingRaw == wire.MaxPendingRaw {
				r.Stop(src, src.Name+" sent too many raw packets", false)
				return
			}
			// Only counted: its buffer is recycled once written, so a main
			// chunk with raw chunks is never decoded (none of the packets
			// the proxy acts on has any).
			pendingRaw++
			if n >= bigChunk {
				big, small = big+1, 0
			} else {
				big, small = 0, small+1
			}
			switch {
			case big >= bigRun:
				want = bigReadAhead
			case small >= smallRun:
				want = cutReadAhead
			}
			if o.sp != nil && r.SpliceMin > 0 && n-rd.Buffered() >= r.SpliceMin && !h.Encrypted() {
				// The head goes out from the reader's own buffer: until the
				// cut is done nothing reads it.
				head := rd.PeekBuffered(n)
				src.read.Add(int64(len(head)))
				if !o.cut(&cut{header: h, head: head, rest: n - len(head), done: o.done}) {
					return
				}
				_ = rd.Discard(len(head)) // buffered: cannot fail
				continue
			}
		}
		if rd.Buffered() < n && !o.flush() {
			return
		}
		f, err := rd.ReadPayload(h, n)
		if err != nil {
			r.readFailed(src, err)
			return
		}
		src.read.Add(int64(n))
		if f.Header.Index > 0 {
			if !o.emit(outgoing{frame: f}) {
				return
			}
			continue
		}
		forward, rewritten, err := r.inspect(src, pendingRaw > 0, f)
		if rewritten != nil {
			// In order with what was read before it.
			if !o.emit(outgoing{packet: rewritten}) {
				return
			}
		}
		var bye *peerDisconnect
		if errors.As(err, &bye) {
			// Pass the peer's goodbye on after what was read before it.
			if o.emit(outgoing{frame: f}) && o.flush() {
				o.release()
				close(o.queue)
				<-writerDone
				queueOpen = false
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
		if forward && !o.emit(outgoing{frame: f}) {
			return
		}
		pendingRaw = 0
	}
}

// output is one direction's sending side, as its reader drives it. While
// the writer goroutine is idle the reader writes itself: a hand-off per
// frame costs more than the write (Go wakes another thread for it), and
// a cut-through chunk is best moved by the goroutine that read its
// header. Frames whose successors are already buffered are held back and
// go out together, in one writev per read from src. Once something waits
// in the writer's queue, everything after it goes there too, in order.
type output struct {
	r        *Relay
	src, dst *Leg
	sp       *splicer // nil: not between two plain sockets
	queue    chan outgoing
	pending  atomic.Int32 // items queued and not yet written
	held     bool         // the reader holds dst's write side
	batch    []outgoing   // frames held back, written with the next write
	done     chan error   // a queued cut's outcome
}

// take gets dst's write side for the reader if the writer has nothing
// left to write and no pinger or goodbye is writing.
func (o *output) take() bool {
	if !o.held && o.pending.Load() == 0 {
		select {
		case o.dst.wlock <- struct{}{}:
			o.held = true
		default:
		}
	}
	return o.held
}

// yield writes what is held back if it ends a packet and a pinger or a
// goodbye waits for dst: they go in between packets.
func (o *output) yield() bool {
	if n := len(o.batch); n > 0 && !o.batch[n-1].raw() && o.dst.waiters.Load() > 0 {
		return o.write()
	}
	return true
}

// emit forwards a frame or a packet. false: the relay is stopping.
func (o *output) emit(x outgoing) bool {
	if !o.yield() {
		return false
	}
	if !o.take() {
		return o.enqueue(x)
	}
	if x.packet == nil {
		o.batch = append(o.batch, x)
		if len(o.batch) < cap(o.batch) {
			return true
		}
		return o.flush()
	}
	o.batch = append(o.batch, x)
	return o.write()
}

// cut forwards a cut-through chunk and returns once its payload has gone.
func (o *output) cut(c *cut) bool {
	if !o.yield() {
		return false
	}
	if !o.take() {
		if !o.enqueue(outgoing{cut: c}) {
			return false
		}
		// The writer reads src now: wait for it.
		select {
		case err := <-o.done:
			if err != nil && !errors.Is(err, errWriterStopped) {
				o.r.readFailed(o.src, fmt.Errorf("reading %s payload: %w", c.header, err))
			}
			return err == nil
		case <-o.r.stopped:
			return false
		}
	}
	o.batch = append(o.batch, outgoing{cut: c})
	return o.write()
}

// flush writes the frames held back.
func (o *output) flush() bool {
	if len(o.batch) == 0 {
		return true
	}
	return o.write()
}

// write writes the batch, the reader holding dst, and lets dst go unless
// the batch ends inside a packet.
func (o *output) write() bool {
	last := o.batch[len(o.batch)-1]
	var srcErr error
	err := o.dst.writeLocked(func() error {
		var err error
		if srcErr, err = o.r.writeBatch(o.src, o.dst, o.sp, o.batch); srcErr != nil {
			return srcErr // dst has part of a chunk: torn
		}
		return err
	})
	clear(o.batch)
	o.batch = o.batch[:0]
	if err != nil || !last.raw() {
		o.dst.unlock()
		o.held = false
	}
	switch {
	case srcErr != nil:
		o.r.readFailed(o.src, fmt.Errorf("reading %s payload: %w", last.cut.header, srcErr))
		return false
	case err != nil:
		o.r.Stop(o.dst, o.dst.Name+" connection lost", false)
		return false
	}
	return true
}

func (o *output) enqueue(x outgoing) bool {
	o.pending.Add(1)
	select {
	case o.queue <- x:
		return true
	case <-o.r.stopped:
		return false
	}
}

// release lets dst go when the reader stops holding it.
func (o *output) release() {
	if !o.held {
		return
	}
	// Held past a write: that write ended inside a packet, whose end
	// will never come (or frames were held back, which are dropped).
	o.dst.torn = true
	for _, x := range o.batch {
		bufpool.Put(x.frame.Payload)
	}
	o.batch = o.batch[:0]
	o.dst.unlock()
	o.held = false
}

// readFailed stops the relay for a read error from src.
func (r *Relay) readFailed(src *Leg, err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		r.Stop(src, src.Name+" connection lost", false)
	default:
		r.Log.Warn("relay read failed", "from", src.Name, "err", err)
		r.Stop(src, fmt.Sprintf("%s protocol error: %v", src.Name, err), false)
	}
}

// writer writes what pump queues to dst, in order. What is already
// queued when it looks goes out in one write (system calls, and on
// loopback the receiver's wake-ups, cost more than the bytes at draw
// rates), up to and including a packet or a cut-through chunk.
func (r *Relay) writer(src, dst *Leg, sp *splicer, queue <-chan outgoing, pending *atomic.Int32) {
	// dst's write side is held from a packet's first raw chunk to its
	// main chunk: the receiver attaches raw chunks to the next main
	// chunk, so no ping or goodbye may come in between.
	held := false
	defer func() {
		if held {
			dst.torn = true // part of a packet went out, never its end
			dst.unlock()
		}
	}()
	batch := make([]outgoing, 0, queueDepth)
	for closed := false; !closed; {
		o, ok := <-queue
		if !ok {
			return
		}
		batch = append(batch[:0], o)
	gather:
		for len(batch) < cap(batch) && o.cut == nil && o.packet == nil && (o.raw() || dst.waiters.Load() == 0) {
			select {
			case o, ok = <-queue:
				if !ok {
					closed = true
					break gather
				}
				batch = append(batch, o)
			default:
				break gather
			}
		}
		if !held {
			dst.wlock <- struct{}{}
			held = true
		}
		var srcErr error
		err := dst.writeLocked(func() error {
			var err error
			srcErr, err = r.writeBatch(src, dst, sp, batch)
			if srcErr != nil {
				return srcErr // dst has part of a chunk: torn
			}
			return err
		})
		if err != nil || !o.raw() {
			dst.unlock()
			held = false
		}
		pending.Add(-int32(len(batch)))
		if o.cut != nil {
			switch {
			case srcErr != nil:
				o.cut.done <- srcErr // the reader stops the relay, as for any read error
				continue
			case err != nil:
				o.cut.done <- errWriterStopped
			default:
				o.cut.done <- nil
			}
		}
		if err != nil {
			r.Stop(dst, dst.Name+" connection lost", false)
			for range queue {
			}
			return
		}
	}
}

// writeBatch writes frames, then possibly a packet or a cut-through
// chunk (only ever last). Between plain sockets the frames, and a cut's
// header and head, go straight to the socket in one writev, and the
// cut's payload follows by splice. srcErr is src's failure during a cut
// (dst then has part of the chunk), dstErr dst's.
func (r *Relay) writeBatch(src, dst *Leg, sp *splicer, batch []outgoing) (srcErr, dstErr error) {
	last := batch[len(batch)-1]
	frames := batch
	if last.cut != nil || last.packet != nil {
		frames = batch[:len(batch)-1]
	}
	defer func() {
		for _, o := range frames {
			bufpool.Put(o.frame.Payload) // written: nothing refers to it any more
		}
	}()
	if sp == nil {
		if len(frames) > 0 {
			fs := make([]wire.Frame, len(frames))
			for i, o := range frames {
				fs[i] = o.frame
			}
			if err := dst.Conn.WriteFrames(fs...); err != nil {
				return nil, err
			}
		}
		if last.packet != nil {
			return nil, dst.Conn.WritePacket(last.packet)
		}
		return nil, nil
	}
	// The headers and the writev's vector live in sp: no garbage per write.
	h, vec := sp.hdrs[:0], sp.bufs[:0]
	add := func(hd wire.Header, payload []byte) {
		h = wire.AppendHeader(h, hd)
		vec = append(vec, h[len(h)-wire.HeaderSize:], payload)
	}
	for _, o := range frames {
		add(o.frame.Header, o.frame.Payload)
	}
	if last.cut != nil {
		add(last.cut.header, last.cut.head)
	}
	if len(vec) > 0 {
		bufs := net.Buffers(vec)
		n, err := bufs.WriteTo(dst.Net)
		clear(vec) // refers to payloads about to be recycled
		dst.direct.Add(n)
		if err != nil {
			return nil, fmt.Errorf("forwarding %d frames: %w", len(vec)/2, err)
		}
	}
	switch {
	case last.packet != nil:
		return nil, dst.Conn.WritePacket(last.packet)
	case last.cut != nil && last.cut.rest > 0:
		return sp.move(last.cut.rest, &src.read, &dst.spliced)
	}
	return nil, nil
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
		pi := r.ProxyInfo()
		if r.Client.Form == caps.Nested {
			// 6.x reads its info as dicts within dicts: "bytes.client"
			// becomes "bytes": {"client": ...}, as its own proxy has it.
			pi = caps.Nest(pi)
		}
		d = append(d, value.Item{Key: "proxy", Value: pi})
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

// pinger sends the proxy's own pings to one leg and stops the relay when
// its echoes stop coming. While the leg's write side is busy (a slow
// peer, or a spliced chunk whose source stalled) the deadline is still
// watched.
func (r *Relay) pinger(ctx context.Context, l *Leg, start time.Time) {
	if !l.pings {
		return
	}
	t := time.NewTicker(r.pingEvery)
	defer t.Stop()
	// A leg is blamed for echoes it did not send, not for pings it could
	// not be sent: while its write side is busy, its deadline runs from
	// when the wait began, so a chunk spliced from a stalled source times
	// out the source first.
	stale := func(now, waitFrom time.Time) bool {
		last := time.UnixMilli(l.echo.Load())
		if waitFrom.After(last) {
			last = waitFrom
		}
		if now.Sub(last) <= r.pingDeadline {
			return false
		}
		r.Stop(l, "proxy to "+l.Name+" ping timeout", false)
		return true
	}
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case <-r.stopped:
			return
		case now = <-t.C:
		}
		if stale(now, time.Time{}) {
			return
		}
		for waitFrom := now; ; {
			locked, tick := l.lockOr(t.C, r.stopped)
			if locked {
				break
			}
			if !tick || ctx.Err() != nil {
				return
			}
			if stale(time.Now(), waitFrom) {
				return
			}
		}
		now = time.Now()
		mono := int64(now.Sub(start) / time.Millisecond)
		err := l.writeLocked(func() error {
			return l.Conn.WritePacket(conn.Packet{packet.Ping, mono, now.UnixMilli(), r.UUID})
		})
		l.unlock()
		if err != nil {
			if !errors.Is(err, errTorn) { // else whoever tore it has stopped the relay
				r.Stop(l, l.Name+" connection lost", false)
			}
			return
		}
	}
}

// EnablePings turns on the proxy's pings towards a leg whose hello says it
// echoes a ping's source id (3.1: "ping-echo-sourceid"; 6.x always does).
func (l *Leg) EnablePings(h caps.Caps) {
	l.pings = h.Bool("ping-echo-sourceid", false) || l.Form == caps.Nested
}
