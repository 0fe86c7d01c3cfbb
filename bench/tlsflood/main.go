// SPDX-License-Identifier: GPL-2.0-or-later

// Command tlsflood measures what each transport costs our proxy when it
// relays a draw flood server→client: plain xpra over TCP, TLS, WebSocket
// and WSS, all on the proxy's one TCP port, against a direct connection
// to the same fake server (BENCHMARKS.md, issue 4). bench/transport-compare.sh
// starts the proxy and runs it; it can also be pointed at a proxy by hand:
//
//	tlsflood -proxy 127.0.0.1:14670 -fake 127.0.0.1:15310 -supervisor PID \
//	    -user fake -password pw [-rounds 5] [-draws 1000] [-size 262144]
//
// The fake 3.1.3 server (in this process) answers the relay's hello with
// the hello and new-window a real 3.1.3 server sent (../shared/xpra/traces,
// as the lab's proxy_bench.py does), then writes N draws, each a raw chunk
// of opaque pixel bytes plus its rencoded draw packet, the framing a real
// 3.1.3 server uses. The client dials the proxy over each transport,
// answers its password challenge, and times the draws from the first to
// the last. CPU is read from /proc/PID/task/*/schedstat (ns on a CPU) for
// the supervisor and each of its children, before the first draw and
// after the last: the pre-auth process, which for TLS and WebSocket stays
// to terminate the transport, and the relay worker.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/challenge"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/websocket"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

type options struct {
	proxy, fake, user, password, trace string
	supervisor                         int
	transports                         []string
	rounds, draws, size                int
	pause                              time.Duration
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("tlsflood: ")
	var o options
	var transports string
	flag.StringVar(&o.proxy, "proxy", "127.0.0.1:14670", "our proxy's TCP port (HOST:PORT)")
	flag.StringVar(&o.fake, "fake", "127.0.0.1:15310", "where the fake server listens (the proxy's session target)")
	flag.StringVar(&o.user, "user", "fake", "user name for the proxy's challenge")
	flag.StringVar(&o.password, "password", "pw", "password for the proxy's challenge")
	flag.IntVar(&o.supervisor, "supervisor", 0, "pid of the proxy's supervisor (0: no CPU figures)")
	flag.StringVar(&transports, "transports", "direct,tcp,ssl,ws,wss", "what to measure, in order (rotated each round)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds over all transports")
	flag.IntVar(&o.draws, "draws", 1000, "draws per connection")
	flag.IntVar(&o.size, "size", 256<<10, "pixel bytes per draw (one raw chunk)")
	flag.DurationVar(&o.pause, "pause", 200*time.Millisecond, "fake server's pause between the new-window and the first draw")
	flag.StringVar(&o.trace, "trace", defaultTrace(), "a 3.1.3 server→proxy capture holding the hello and a new-window")
	flag.Parse()
	o.transports = strings.Split(transports, ",")
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func defaultTrace() string {
	return filepath.Join("..", "shared", "xpra", "traces", "e1-attach-via-proxy.proxy-server.1.s2c.bin")
}

func run(o options) error {
	greeting, err := serverGreeting(o.trace)
	if err != nil {
		return err
	}
	l, err := startFake(o, greeting)
	if err != nil {
		return err
	}
	defer l.Close()

	var results []result
	for round := 1; round <= o.rounds; round++ {
		order := slices.Clone(o.transports)
		// Rotate so no transport always runs first (cold caches, a
		// neighbour's build starting) or last.
		k := (round - 1) % len(order)
		order = append(order[k:], order[:k]...)
		for _, tr := range order {
			if o.supervisor != 0 {
				if err := waitIdle(o.supervisor, 10*time.Second); err != nil {
					return err
				}
			}
			r, err := flood(o, tr)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, tr, err)
			}
			r.round = round
			fmt.Println(r.line())
			results = append(results, r)
		}
	}
	fmt.Println()
	summary(os.Stdout, o, results)
	return nil
}

// result is one connection's flood.
type result struct {
	transport string
	round     int
	bytes     int64         // stream bytes from the end of the first draw to the end of the last
	elapsed   time.Duration // first draw to last
	cpu       map[string]time.Duration
	harness   time.Duration // this process: the fake server and the client
	tls       string
}

func (r result) mb() float64   { return float64(r.bytes) / 1e6 }
func (r result) mbps() float64 { return r.mb() / r.elapsed.Seconds() }
func (r result) perMB(role string) float64 {
	return float64(r.cpu[role].Microseconds()) / 1000 / r.mb()
}
func (r result) proxyPerMB() float64 {
	var t time.Duration
	for _, d := range r.cpu {
		t += d
	}
	return float64(t.Microseconds()) / 1000 / r.mb()
}

func (r result) line() string {
	s := fmt.Sprintf("round %d %-6s %6.1f MB in %.3f s = %6.0f MB/s", r.round, r.transport, r.mb(), r.elapsed.Seconds(), r.mbps())
	if r.cpu != nil {
		s += fmt.Sprintf("; proxy CPU %.2f ms/MB (transport %.2f, relay %.2f, supervisor %.2f)",
			r.proxyPerMB(), r.perMB(roleTransport), r.perMB(roleRelay), r.perMB(roleSupervisor))
	}
	s += fmt.Sprintf("; harness %.2f ms/MB", float64(r.harness.Microseconds())/1000/r.mb())
	if r.tls != "" {
		s += "; " + r.tls
	}
	return s
}

func summary(w io.Writer, o options, rs []result) {
	fmt.Fprintf(w, "medians of %d rounds, %d draws of %d bytes per connection, server→client:\n\n", o.rounds, o.draws, o.size)
	fmt.Fprintln(w, "| transport | MB/s | proxy CPU-ms per MB | of which transport process | relay worker | supervisor | harness CPU-ms per MB |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, tr := range o.transports {
		var sel []result
		for _, r := range rs {
			if r.transport == tr {
				sel = append(sel, r)
			}
		}
		if len(sel) == 0 {
			continue
		}
		medf := func(f func(result) float64) float64 {
			v := make([]float64, len(sel))
			for i, r := range sel {
				v[i] = f(r)
			}
			slices.Sort(v)
			m := v[len(v)/2]
			if len(v)%2 == 0 {
				m = (v[len(v)/2-1] + v[len(v)/2]) / 2
			}
			return m
		}
		med := func(f func(result) float64) string { return fmt.Sprintf("%.2f", medf(f)) }
		lo, hi := sel[0].mbps(), sel[0].mbps()
		for _, r := range sel {
			lo, hi = min(lo, r.mbps()), max(hi, r.mbps())
		}
		cpu := func(role string) string {
			if sel[0].cpu == nil {
				return "—"
			}
			return med(func(r result) float64 { return r.perMB(role) })
		}
		total := "—"
		if sel[0].cpu != nil {
			total = med(result.proxyPerMB)
		}
		fmt.Fprintf(w, "| %s | %.0f (%.0f–%.0f) | %s | %s | %s | %s | %s |\n", tr, medf(result.mbps), lo, hi,
			total, cpu(roleTransport), cpu(roleRelay), cpu(roleSupervisor),
			med(func(r result) float64 { return float64(r.harness.Microseconds()) / 1000 / r.mb() }))
	}
}

// flood makes one connection over transport tr and reads the draws.
func flood(o options, tr string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := result{transport: tr}
	nc, tlsInfo, err := dial(ctx, o, tr)
	if err != nil {
		return r, err
	}
	defer nc.Close()
	r.tls = tlsInfo
	dl, _ := ctx.Deadline()
	if err := nc.SetDeadline(dl); err != nil {
		return r, err
	}
	rest, err := handshake(nc, o.user, o.password)
	if err != nil {
		return r, err
	}
	// The relay (and for TLS/WebSocket the pre-auth process carrying the
	// transport) exists once the server's hello came through; the fake
	// server pauses before the first draw, so this costs nothing timed.
	var procs []proc
	if o.supervisor != 0 && tr != "direct" {
		if procs, err = proxyProcs(o.supervisor); err != nil {
			return r, err
		}
	}
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), nc), 64<<10)
	scratch := make([]byte, max(o.size, 1<<20))
	var hdr [wire.HeaderSize]byte
	var t0 time.Time
	var c0 map[string]time.Duration
	var h0 time.Duration
	var n int64
	for got := 0; got < o.draws; {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return r, fmt.Errorf("after %d draws: %w", got, err)
		}
		h, err := wire.ParseHeader(hdr[:])
		if err != nil {
			return r, fmt.Errorf("after %d draws: %w", got, err)
		}
		if int(h.Size) > len(scratch) {
			scratch = make([]byte, h.Size)
		}
		payload := scratch[:h.Size]
		if _, err := io.ReadFull(br, payload); err != nil {
			return r, fmt.Errorf("after %d draws: %w", got, err)
		}
		if !t0.IsZero() {
			n += wire.HeaderSize + int64(h.Size)
		}
		if h.Index != 0 || h.Level != 0 {
			continue // pixels, or a compressed packet (a ping; draws are not compressed)
		}
		if name, _, err := conn.PeekType(h.Encoding(), payload); err != nil || name != "draw" {
			continue
		}
		got++
		if t0.IsZero() {
			// The clock starts with the first draw, as bench/flood.py. A
			// plain TCP connection's pre-auth process has handed over and
			// may still have been exiting when the list was made.
			procs = slices.DeleteFunc(procs, func(p proc) bool { return p.role == roleTransport && !alive(p.pid) })
			if c0, err = cpuOf(procs); err != nil {
				return r, err
			}
			h0 = selfCPU()
			t0 = time.Now()
		}
	}
	r.elapsed = time.Since(t0)
	r.harness = selfCPU() - h0
	r.bytes = n
	if procs != nil {
		c1, err := cpuOf(procs)
		if err != nil {
			return r, err
		}
		r.cpu = map[string]time.Duration{}
		for k, v := range c1 {
			r.cpu[k] = v - c0[k]
		}
	}
	return r, nil
}

// dial opens the client's stream: TCP, TLS over TCP, a websocket over
// either. Certificates are not verified: the script's is a throwaway.
func dial(ctx context.Context, o options, tr string) (net.Conn, string, error) {
	addr := o.proxy
	if tr == "direct" {
		addr = o.fake
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("connecting to %s: %w", addr, err)
	}
	var info string
	if tr == "ssl" || tr == "wss" {
		tc := tls.Client(nc, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}) //nolint:gosec // throwaway test certificate on loopback
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, "", fmt.Errorf("TLS handshake: %w", err)
		}
		st := tc.ConnectionState()
		info = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
		nc = tc
	}
	if tr == "ws" || tr == "wss" {
		wc, err := websocket.Dial(ctx, nc, addr, "/")
		if err != nil {
			nc.Close()
			return nil, "", err
		}
		nc = wc
	}
	switch tr {
	case "direct", "tcp", "ssl", "ws", "wss":
		return nc, info, nil
	}
	nc.Close()
	return nil, "", fmt.Errorf("unknown transport %q", tr)
}

// handshake says hello as a 3.1.3 client without windows, answers the
// password challenge and waits for the server's hello. It returns the
// stream bytes read past that hello.
func handshake(nc net.Conn, user, password string) ([]byte, error) {
	c := conn.New(nc)
	hello := value.Dict{
		{Key: "version", Value: "3.1.3"},
		{Key: "client_type", Value: "xpra-proxy-tlsflood"},
		{Key: "uuid", Value: newUUID()},
		{Key: "username", Value: user},
		{Key: "rencode", Value: true},
		{Key: "encoders", Value: []any{"rencode", "bencode"}},
		{Key: "compressors", Value: []any{"lz4", "zlib"}},
		{Key: "lz4", Value: true},
		{Key: "zlib", Value: true},
		{Key: "digest", Value: anys(digest.Supported())},
		{Key: "salt-digest", Value: anys(digest.SupportedSalt())},
		{Key: "challenge", Value: true},
		{Key: "ui_client", Value: false},
		{Key: "windows", Value: false},
		{Key: "wants_aliases", Value: false},
	}
	if err := c.WritePacket(conn.Packet{packet.Hello, hello}); err != nil {
		return nil, fmt.Errorf("sending hello: %w", err)
	}
	for {
		p, err := c.ReadPacket()
		if err != nil {
			return nil, fmt.Errorf("waiting for the server's hello: %w", err)
		}
		switch p[0] {
		case packet.Hello:
			return c.Reader().Drain(), nil
		case packet.Challenge:
			answer, err := answer(p, password)
			if err != nil {
				return nil, err
			}
			if err := c.WritePacket(conn.Packet{packet.Hello, append(slices.Clone(hello), answer...)}); err != nil {
				return nil, fmt.Errorf("sending the challenge answer: %w", err)
			}
		case packet.Disconnect:
			reason, details := packet.DisconnectReason(p)
			return nil, &conn.DisconnectError{Reason: reason, Details: details}
		}
	}
}

func answer(p conn.Packet, password string) (value.Dict, error) {
	ch, err := challenge.ParseChallenge(p)
	if err != nil {
		return nil, err
	}
	return ch.Answer([]byte(password))
}

// fakeServer answers every connection (the relay's, or the client's for
// "direct") with a captured 3.1.3 greeting and a draw flood.
type fakeServer struct {
	greeting []byte // the hello and new-window frames, as captured
	draws    int
	pixels   []byte
	pause    time.Duration
}

// startFake listens on o.fake and serves every connection until the
// listener is closed.
func startFake(o options, greeting []byte) (net.Listener, error) {
	l, err := net.Listen("tcp", o.fake)
	if err != nil {
		return nil, fmt.Errorf("fake server: %w", err)
	}
	f := &fakeServer{greeting: greeting, draws: o.draws, pixels: make([]byte, o.size), pause: o.pause}
	_, _ = rand.Read(f.pixels) // opaque, incompressible pixel data, as the lab's harness sends
	go f.serve(l)
	return l, nil
}

func (f *fakeServer) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if err := f.one(c); err != nil {
				log.Printf("fake server: %v", err)
			}
		}()
	}
}

func (f *fakeServer) one(c net.Conn) error {
	if _, err := conn.New(c).ReadPacket(); err != nil {
		return fmt.Errorf("reading the hello: %w", err)
	}
	// The relay's pings (and anything else) are read and dropped until
	// the peer hangs up, which ends the connection.
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c)
		close(done)
	}()
	if _, err := c.Write(f.greeting); err != nil {
		return err
	}
	time.Sleep(f.pause)
	raw := wire.AppendHeader(nil, wire.Header{Index: 7, Size: uint32(len(f.pixels))})
	for seq := 1; seq <= f.draws; seq++ {
		pkt, err := rencode.Encode([]any{"draw", 1, 0, 0, 164, 164, "webp", []byte{}, seq, 0,
			value.Dict{{Key: "window-size", Value: []any{164, 164}}}}, rencode.Legacy)
		if err != nil {
			return err
		}
		main := append(wire.AppendHeader(nil, wire.Header{Flags: wire.FlagRencode, Size: uint32(len(pkt))}), pkt...)
		bufs := net.Buffers{raw, f.pixels, main}
		if _, err := bufs.WriteTo(c); err != nil {
			return fmt.Errorf("draw %d: %w", seq, err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
	}
	return nil
}

// serverGreeting returns the first hello and new-window frames of a
// capture, byte for byte.
func serverGreeting(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	r := wire.NewReader(bytes.NewReader(data))
	var hello, neww []byte
	for hello == nil || neww == nil {
		f, err := r.ReadFrame()
		if err != nil {
			return nil, fmt.Errorf("trace %s: no hello and new-window: %w", path, err)
		}
		if f.Header.Index != 0 {
			continue
		}
		plain := f.Payload
		if f.Header.Level != 0 {
			if plain, err = compress.Decompress(f.Header.Level, f.Payload, wire.DefaultMaxPacketSize); err != nil {
				return nil, fmt.Errorf("trace %s: %w", path, err)
			}
		}
		name, _, err := conn.PeekType(f.Header.Encoding(), plain)
		if err != nil {
			continue
		}
		raw := append(wire.AppendHeader(nil, f.Header), f.Payload...)
		switch {
		case name == "hello" && hello == nil:
			hello = raw
		case name == "new-window" && neww == nil:
			neww = raw
		}
	}
	return append(hello, neww...), nil
}

// Roles of the proxy's processes, told apart by their command line.
const (
	roleSupervisor = "supervisor"
	roleTransport  = "transport" // xpra-proxy-preauth: terminates TLS/WebSocket after login
	roleRelay      = "relay"     // xpra-proxy-worker --relay
)

// alive: the process exists and has not exited (a zombie's CPU time is
// no longer in its tasks' schedstat).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && len(b) > i+2 && b[i+2] != 'Z' && b[i+2] != 'X'
}

type proc struct {
	pid  int
	role string
}

// proxyProcs is the supervisor and its children, which with one
// connection at a time are that connection's processes.
func proxyProcs(sup int) ([]proc, error) {
	ps := []proc{{sup, roleSupervisor}}
	kids, err := children(sup)
	if err != nil {
		return nil, err
	}
	for _, k := range kids {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
		if err != nil {
			continue // gone already
		}
		switch {
		case bytes.Contains(cmd, []byte("--relay")):
			ps = append(ps, proc{k, roleRelay})
		case bytes.Contains(cmd, []byte("--preauth")):
			ps = append(ps, proc{k, roleTransport})
		case alive(k):
			return nil, fmt.Errorf("supervisor %d has an unexpected child %d: %q", sup, k, cmd)
		}
	}
	return ps, nil
}

func children(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// Fields after the command name, which may hold spaces: state, ppid.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out, nil
}

// waitIdle waits until the supervisor has no children left from the
// previous connection, so its CPU is not counted in the next.
func waitIdle(sup int, limit time.Duration) error {
	end := time.Now().Add(limit)
	for {
		kids, err := children(sup)
		if err != nil {
			return err
		}
		if len(kids) == 0 {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("supervisor %d still has children %v after %v", sup, kids, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuOf sums, per role, the time each task (thread) of the processes was
// on a CPU, in ns (/proc/PID/task/TID/schedstat, first field): finer than
// the clock ticks of /proc/PID/stat.
func cpuOf(ps []proc) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, p := range ps {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.pid))
		if err != nil {
			return nil, fmt.Errorf("process %d (%s) is gone: %w", p.pid, p.role, err)
		}
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", p.pid, t.Name()))
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread ended
			}
			if err != nil {
				return nil, err
			}
			f := strings.Fields(string(b))
			if len(f) == 0 {
				continue
			}
			ns, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("schedstat of %d/%s: %w", p.pid, t.Name(), err)
			}
			out[p.role] += time.Duration(ns)
		}
	}
	return out, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func anys(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func newUUID() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
