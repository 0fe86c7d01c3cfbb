// SPDX-License-Identifier: GPL-2.0-or-later

// Command manyrelays measures the proxy with many live relays (issue 17:
// 1,000 on a 2-core machine). It starts the proxy from --bin with sqlite
// challenge auth, light fake 3.1 servers in this process (a real 3.1.3
// server costs ~100 MB), and brings the number of live relays up through
// --steps, each relay trickling --rate draws a second of --size bytes from
// its server to its client. At each step it prints a row: the
// supervisor's RSS, threads and CPU, the relays' RSS and USS
// (/proc/PID/smaps_rollup) and their CPU, the proxy's total PSS and the
// machine's used memory over the start, and the setup time of --probes
// new logins (p50, p99) made one at a time while the relays live. Then,
// with --tls N, N more relays over TLS (their pre-auth process stays as
// the transport and adds its own memory) and a last row, its probes over
// TLS.
//
//	go build -o /tmp/bin/ ./bench/manyrelays && bash scripts/build-bin.sh /tmp/bin
//	/tmp/bin/manyrelays --bin /tmp/bin --steps 0,10,100,1000 --tls 100
//
// All relays run as --user (one uid: the proxy's max-relays-per-user is
// lifted for the run, as are its per-source limits; clients come from
// --sources loopback addresses). Timings are a busy machine's if the
// machine is busy: run it on a quiet one for figures.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/fakexpra"
	"github.com/xpra-proxy/xpra-proxy/protocol/challenge"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

type options struct {
	bin, userName, proxyLog, extra string
	port, probes, tls, fakes       int
	sources, parallel, size        int
	rate                           float64
	steps                          []int
	window, settle                 time.Duration
	loginRates                     []float64
	rateWindow                     time.Duration
}

func main() {
	var o options
	var steps string
	flag.StringVar(&o.bin, "bin", "", "directory with xpra-proxy and its workers (scripts/build-bin.sh)")
	flag.StringVar(&o.userName, "user", "xpra-proxy-test", "the account every relay runs as (a login account: uid >= UID_MIN)")
	flag.StringVar(&o.proxyLog, "proxy-log", "/tmp/manyrelays-proxy.log", "where the proxy logs")
	flag.StringVar(&o.extra, "proxy-args", "", "more xpra-proxy arguments, space separated")
	flag.StringVar(&steps, "steps", "0,10,100,1000", "live relays at each row, increasing")
	flag.IntVar(&o.port, "port", 14780, "the proxy's port")
	flag.IntVar(&o.probes, "probes", 30, "new logins timed at each row, one at a time")
	flag.IntVar(&o.tls, "tls", 100, "TLS relays opened after the last step, for the last row (0: none)")
	flag.IntVar(&o.fakes, "fakes", 8, "fake servers (the relays are spread over them)")
	flag.IntVar(&o.sources, "sources", 250, "loopback client addresses (127.0.4.1...)")
	flag.IntVar(&o.parallel, "parallel", 8, "logins opened at once while bringing relays up")
	flag.IntVar(&o.size, "size", 16384, "bytes of pixels per draw")
	flag.Float64Var(&o.rate, "rate", 3, "draws a second per relay")
	flag.DurationVar(&o.window, "window", 5*time.Second, "CPU is measured over this long at each row")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "wait after reaching a step before measuring")
	var rates string
	flag.StringVar(&rates, "login-rates", "", "after the steps (and before TLS): new logins a second to sweep, increasing (e.g. 10,20,50,100); each login closed once answered")
	flag.DurationVar(&o.rateWindow, "rate-window", 10*time.Second, "how long each --login-rates rate runs")
	flag.Parse()
	for f := range strings.SplitSeq(rates, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 || (len(o.loginRates) > 0 && r <= o.loginRates[len(o.loginRates)-1]) {
			fmt.Fprintf(os.Stderr, "manyrelays: --login-rates %q: want increasing rates\n", rates)
			os.Exit(2)
		}
		o.loginRates = append(o.loginRates, r)
	}
	for f := range strings.SplitSeq(steps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || (len(o.steps) > 0 && n < o.steps[len(o.steps)-1]) {
			fmt.Fprintf(os.Stderr, "manyrelays: --steps %q: want increasing counts\n", steps)
			os.Exit(2)
		}
		o.steps = append(o.steps, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "manyrelays:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.bin == "" {
		return errors.New("--bin is required")
	}
	u, err := user.Lookup(o.userName)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "manyrelays-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	srv := &trickle{interval: time.Duration(float64(time.Second) / o.rate), pixels: make([]byte, o.size)}
	_, _ = rand.Read(srv.pixels) // incompressible, as real pixels mostly are
	db := filepath.Join(tmp, "users.sdb")
	admin := func(args ...string) error {
		out, err := exec.Command(filepath.Join(o.bin, "xpra-proxy"), append([]string{"auth", "sqlite", db}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("xpra-proxy auth sqlite %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := admin("create"); err != nil {
		return err
	}
	for i := range o.fakes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		go srv.serve(l)
		if err := admin("add", fmt.Sprintf("fake%d", i), "pw", u.Uid, u.Gid, "tcp://"+l.Addr().String()+"/"); err != nil {
			return err
		}
	}
	logf, err := os.Create(o.proxyLog)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{fmt.Sprintf("--bind-tcp=127.0.0.1:%d", o.port), "--tcp-auth=sqlite,filename=" + db,
		"--control-socket=off", "--max-relays-per-user=0", "--per-source-rate=0", "--per-source-max-startups=0",
		fmt.Sprintf("--max-startups=%d", max(50, 4*o.parallel))}
	if o.tls > 0 {
		cert, key, err := throwawayCert(tmp)
		if err != nil {
			return err
		}
		args = append(args, "--ssl-cert="+cert, "--ssl-key="+key)
	}
	if o.extra != "" {
		args = append(args, strings.Fields(o.extra)...)
	}
	cmd := exec.Command(filepath.Join(o.bin, "xpra-proxy"), args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	sup := cmd.Process.Pid
	addr := fmt.Sprintf("127.0.0.1:%d", o.port)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the proxy does not listen on %s (log %s)", addr, o.proxyLog)
		}
	}
	time.Sleep(2 * time.Second) // the spare, and the refused probe's trace gone
	memBase := usedMemKB()

	lg := &load{o: o, addr: addr}
	defer lg.closeAll()
	fmt.Printf("manyrelays: proxy pid %d (log %s), %d fake servers, each relay %.1f draws/s of %d B, %d probes a row; %d cores, load %s\n",
		sup, o.proxyLog, o.fakes, o.rate, o.size, o.probes, numCPU(), loadavg())
	fmt.Printf("limits: open files %s, pid_max %s, threads-max %s\n", nofile(), readTrim("/proc/sys/kernel/pid_max"), readTrim("/proc/sys/kernel/threads-max"))
	header := fmt.Sprintf("%-9s %5s %6s %7s %5s %6s %9s %9s %9s %6s %8s %8s %8s %8s %5s",
		"relays", "live", "drop", "sup_MB", "thr", "sup%", "relayRSS", "relayUSS", "transUSS", "rel%", "pss_MB", "used_MB", "p50_ms", "p99_ms", "fail")
	fmt.Println(header)
	row := func(label string, transport string) {
		time.Sleep(o.settle)
		m := measure(sup, o.window)
		lat, fails := lg.probes(transport)
		fmt.Printf("%-9s %5d %6d %7.1f %5d %6.1f %9s %9s %9s %6.1f %8.1f %8.1f %8.1f %8.1f %5d\n",
			label, lg.live.Load(), lg.dropped.Load(), float64(m.supRSS)/1024, m.supThreads, m.supCPU,
			mb2(m.relayRSS), mb2(m.relayUSS), mb2(m.transUSS), m.relayCPU, float64(m.pss)/1024,
			float64(usedMemKB()-memBase)/1024, pct(lat, 0.5), pct(lat, 0.99), fails)
	}
	for _, n := range o.steps {
		if err := lg.bringTo(n, "tcp"); err != nil {
			return err
		}
		row(strconv.Itoa(n), "tcp")
	}
	if len(o.loginRates) > 0 {
		lg.sweep()
	}
	if o.tls > 0 {
		last := o.steps[len(o.steps)-1]
		if err := lg.bringTo(last+o.tls, "ssl"); err != nil {
			return err
		}
		row(fmt.Sprintf("%d+%dtls", last, o.tls), "ssl")
	}
	fmt.Println("relayRSS/relayUSS/transUSS: median (max) MB per relay worker / TLS transport process; sup% rel%: CPU of one core over",
		o.window, "(the relays' summed); pss_MB: the proxy's processes' PSS; used_MB: the machine's used memory over the start;",
		"p50/p99: setup of a new login (connect to server hello, challenge answered) with the row's relays live")
	return nil
}

// load holds the live relays' client ends.
type load struct {
	o       options
	addr    string
	mu      sync.Mutex
	conns   []net.Conn
	n       atomic.Int64 // logins made (picks the source and the fake)
	live    atomic.Int64
	dropped atomic.Int64 // relays that ended under us
}

// bringTo opens relays (transport tcp or ssl) until total live ones.
func (l *load) bringTo(total int, transport string) error {
	need := total - int(l.live.Load())
	if need <= 0 {
		return nil
	}
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range l.o.parallel {
		wg.Go(func() {
			for range work {
				nc, _, err := l.login(transport)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				l.hold(nc)
			}
		})
	}
	for range need {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d logins failed, the first: %v", f, need, *firstErr.Load())
	}
	return nil
}

// hold keeps a relay's client end, reading and dropping its draws.
func (l *load) hold(nc net.Conn) {
	l.mu.Lock()
	l.conns = append(l.conns, nc)
	l.mu.Unlock()
	l.live.Add(1)
	go func() {
		_, _ = io.Copy(io.Discard, nc)
		l.live.Add(-1)
		l.dropped.Add(1)
	}()
}

func (l *load) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// probes makes o.probes new logins one at a time, each closed once
// answered, and returns their setup times in ms and the failures.
func (l *load) probes(transport string) ([]float64, int) {
	var lat []float64
	fails := 0
	for range l.o.probes {
		nc, took, err := l.login(transport)
		if err != nil {
			fails++
			continue
		}
		nc.Close()
		lat = append(lat, float64(took)/float64(time.Millisecond))
		time.Sleep(100 * time.Millisecond) // its relay ends; the next finds the spare ready
	}
	return lat, fails
}

// sweep offers new logins at each of o.loginRates for o.rateWindow, as
// arrivals on a fixed schedule (open loop: a slow proxy does not slow the
// offered rate), each closed once the server's hello came, and prints
// their setup's p50/p99 with the relays of the last step live; then the
// largest rate whose p99 stayed within 100 ms with no failure.
func (l *load) sweep() {
	fmt.Printf("login rates over %v each (%d relays live):\n", l.o.rateWindow, l.live.Load())
	fmt.Printf("%8s %7s %8s %8s %8s %5s\n", "offered", "logins", "done/s", "p50_ms", "p99_ms", "fail")
	best := 0.0
	for _, rate := range l.o.loginRates {
		time.Sleep(l.o.settle)
		n := int(rate * l.o.rateWindow.Seconds())
		every := time.Duration(float64(time.Second) / rate)
		var mu sync.Mutex
		var lat []float64
		fails := 0
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
				time.Sleep(d)
			}
			wg.Go(func() {
				nc, took, err := l.login("tcp")
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					fails++
					return
				}
				nc.Close()
				lat = append(lat, float64(took)/float64(time.Millisecond))
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		p99 := pct(lat, 0.99)
		fmt.Printf("%8.0f %7d %8.1f %8.1f %8.1f %5d\n", rate, n, float64(len(lat))/elapsed.Seconds(), pct(lat, 0.5), p99, fails)
		if fails == 0 && p99 <= 100 {
			best = rate
		}
	}
	fmt.Printf("sustained: %.0f logins/s (the largest offered rate with p99 setup <= 100 ms and no failure)\n", best)
}

// login connects (over TLS for "ssl"), logs in with the challenge and
// returns the connection once the server's hello came through, and the
// time that took from the dial.
func (l *load) login(transport string) (net.Conn, time.Duration, error) {
	i := l.n.Add(1)
	k := int(i % int64(l.o.sources))
	src := net.IPv4(127, 0, byte(4+k/250), byte(1+k%250))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 30 * time.Second}
	start := time.Now()
	nc, err := d.Dial("tcp", l.addr)
	if err != nil {
		return nil, 0, err
	}
	if transport == "ssl" {
		tc := tls.Client(nc, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}) //nolint:gosec // our throwaway certificate, on loopback
		nc = tc
	}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := handshake(nc, fmt.Sprintf("fake%d", i%int64(l.o.fakes)), "pw"); err != nil {
		nc.Close()
		return nil, 0, err
	}
	took := time.Since(start)
	_ = nc.SetDeadline(time.Time{})
	return nc, took, nil
}

// handshake says hello as a 3.1.3 client without windows, answers the
// password challenge and waits for the server's hello.
func handshake(nc net.Conn, user, password string) error {
	c := conn.New(nc)
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	hello := value.Dict{
		{Key: "version", Value: "3.1.3"},
		{Key: "client_type", Value: "xpra-proxy-manyrelays"},
		{Key: "uuid", Value: hex.EncodeToString(id)},
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
	}
	if err := c.WritePacket(conn.Packet{packet.Hello, hello}); err != nil {
		return fmt.Errorf("sending hello: %w", err)
	}
	for {
		p, err := c.ReadPacket()
		if err != nil {
			return fmt.Errorf("waiting for the server's hello: %w", err)
		}
		switch p[0] {
		case packet.Hello:
			return nil
		case packet.Challenge:
			ch, err := challenge.ParseChallenge(p)
			if err != nil {
				return err
			}
			answer, err := ch.Answer([]byte(password))
			if err != nil {
				return err
			}
			if err := c.WritePacket(conn.Packet{packet.Hello, append(slices.Clone(hello), answer...)}); err != nil {
				return fmt.Errorf("sending the challenge answer: %w", err)
			}
		case packet.Disconnect:
			reason, details := packet.DisconnectReason(p)
			return &conn.DisconnectError{Reason: reason, Details: details}
		}
	}
}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// trickle is a fake 3.1 server: it answers the relay's hello, then writes
// a draw (a raw chunk of pixels and its rencoded packet, as 3.1.3 frames
// them) every interval until the relay hangs up.
type trickle struct {
	interval time.Duration
	pixels   []byte
}

func (t *trickle) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go t.one(c)
	}
}

func (t *trickle) one(c net.Conn) {
	defer c.Close()
	cc := conn.New(c)
	if _, err := cc.ReadPacket(); err != nil {
		return
	}
	if err := cc.WritePacket(conn.Packet{packet.Hello, fakexpra.Hello("manyrelays")}); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c) // the relay's pings, if any
		close(done)
	}()
	// A random phase, so that a thousand relays do not draw in step.
	time.Sleep(time.Duration(mrand.Int64N(int64(t.interval) + 1)))
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	raw := wire.AppendHeader(nil, wire.Header{Index: 7, Size: uint32(len(t.pixels))})
	for seq := 1; ; seq++ {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		pkt, err := rencode.Encode([]any{"draw", 1, 0, 0, 64, 64, "webp", []byte{}, seq, 0,
			value.Dict{{Key: "window-size", Value: []any{64, 64}}}}, rencode.Legacy)
		if err != nil {
			return
		}
		main := append(wire.AppendHeader(nil, wire.Header{Flags: wire.FlagRencode, Size: uint32(len(pkt))}), pkt...)
		bufs := net.Buffers{raw, t.pixels, main}
		if _, err := bufs.WriteTo(c); err != nil {
			return
		}
	}
}

// figures is one row's measurement of the proxy's processes.
type figures struct {
	supRSS, supThreads int     // kB, count
	supCPU, relayCPU   float64 // % of one core over the window
	relayRSS, relayUSS []int   // kB per relay worker
	transUSS           []int   // kB per TLS transport (a pre-auth process holding a connection)
	pss                int     // kB, the supervisor and all its children
}

func measure(sup int, window time.Duration) figures {
	var f figures
	before := cpuTicks(sup)
	relays, others := classify(sup)
	relayBefore := int64(0)
	for _, p := range relays {
		relayBefore += cpuTicks(p)
	}
	time.Sleep(window)
	relayAfter := int64(0)
	for _, p := range relays {
		relayAfter += cpuTicks(p)
	}
	hz := float64(100) // USER_HZ: 100 on Linux
	f.supCPU = float64(cpuTicks(sup)-before) / hz / window.Seconds() * 100
	f.relayCPU = float64(relayAfter-relayBefore) / hz / window.Seconds() * 100
	st := status(sup)
	f.supRSS, f.supThreads = st["VmRSS"], st["Threads"]
	f.pss = rollup(sup)["Pss"]
	for _, p := range relays {
		r := rollup(p)
		f.relayRSS = append(f.relayRSS, r["Rss"])
		f.relayUSS = append(f.relayUSS, r["Private_Clean"]+r["Private_Dirty"])
		f.pss += r["Pss"]
	}
	for _, p := range others {
		r := rollup(p.pid)
		f.pss += r["Pss"]
		if p.transport {
			f.transUSS = append(f.transUSS, r["Private_Clean"]+r["Private_Dirty"])
		}
	}
	return f
}

type child struct {
	pid       int
	transport bool // a pre-auth process past its login: a TLS transport
}

// classify lists the supervisor's children: relay workers, and the others
// (pre-auth processes, the control process). A pre-auth process whose
// client socket is connected is a transport: the spare has none.
func classify(sup int) (relays []int, others []child) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		fs := strings.Fields(string(b[i+1:]))
		if len(fs) < 2 || fs[1] != strconv.Itoa(sup) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		switch {
		case strings.Contains(string(cmdline), "--relay"):
			relays = append(relays, pid)
		case strings.Contains(string(cmdline), "--preauth"):
			others = append(others, child{pid: pid, transport: sockets(pid) > 2})
		default:
			others = append(others, child{pid: pid})
		}
	}
	return relays, others
}

// sockets counts a process's socket descriptors: a spare pre-auth process
// has its channel only, a TLS transport its channel, the client's socket
// and the relay's stream.
func sockets(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(t, "socket:") {
			n++
		}
	}
	return n
}

// cpuTicks is utime+stime of a process, in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(fs[11], 10, 64)
	s, _ := strconv.ParseInt(fs[12], 10, 64)
	return u + s
}

// kvFile reads "Key: N kB" lines (status, smaps_rollup) into kB or counts.
func kvFile(path string) map[string]int {
	out := map[string]int{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		if n, err := strconv.Atoi(fs[0]); err == nil {
			out[k] = n
		}
	}
	return out
}

func status(pid int) map[string]int { return kvFile(fmt.Sprintf("/proc/%d/status", pid)) }
func rollup(pid int) map[string]int { return kvFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)) }

// usedMemKB is the machine's MemTotal - MemAvailable.
func usedMemKB() int {
	m := kvFile("/proc/meminfo")
	return m["MemTotal"] - m["MemAvailable"]
}

// mb2 is "median (max)" of kB figures, in MB.
func mb2(kb []int) string {
	if len(kb) == 0 {
		return "-"
	}
	s := slices.Sorted(slices.Values(kb))
	return fmt.Sprintf("%.1f(%.1f)", float64(s[len(s)/2])/1024, float64(s[len(s)-1])/1024)
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func loadavg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func nofile() string {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return "?"
	}
	return fmt.Sprintf("%d (hard %d)", r.Cur, r.Max)
}

func numCPU() int {
	n := 0
	for l := range strings.SplitSeq(readTrim("/proc/cpuinfo"), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return n
}

// throwawayCert writes a self-signed certificate for localhost and its
// key (mode 600, as the proxy demands) into dir.
func throwawayCert(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("certificate key: %w", err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("certificate key: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
