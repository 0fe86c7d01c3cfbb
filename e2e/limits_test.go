// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// Loopback addresses play the sources (Linux routes all of 127/8 to lo).
var (
	legitSource = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	floodSource = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	guessSource = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}
)

const floodConns = 1000

// raiseNoFile lifts this process's descriptor limit to what the flood
// needs (Go already raises the soft limit to the hard one at start; root
// may raise the hard one).
func raiseNoFile(t testing.TB, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	lim.Cur = max(lim.Cur, need)
	lim.Max = max(lim.Max, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raising RLIMIT_NOFILE to %d: %v", need, err)
	}
}

// load is the attack of issue 4: floodConns idle or slow (one byte a
// second) unauthenticated connections from one address, reopened as soon
// as the proxy closes them, and a password-guessing loop from another.
type load struct {
	p       *proxylab.Proxy
	stop    chan struct{}
	wg      sync.WaitGroup
	started time.Time
	stopped time.Time

	floodDials, floodDialErrs atomic.Int64
	guesses                   atomic.Int64 // guesses answered "authentication failed"
	guessesShut               atomic.Int64 // guesses closed before any answer (refused)
	guessBadErr               atomic.Value // unexpected outcome, e.g. a wrong password accepted
}

func startLoad(t testing.TB, p *proxylab.Proxy, user, display string, guessers int) *load {
	t.Helper()
	raiseNoFile(t, floodConns+1024)
	l := &load{p: p, stop: make(chan struct{}), started: time.Now()}
	for i := range floodConns {
		l.wg.Go(func() { l.flood(i%2 == 1) })
	}
	for i := range guessers {
		l.wg.Go(func() { l.guess(user, display, i) })
	}
	return l
}

func (l *load) done() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// flood keeps one connection open from floodSource, idle or sending one
// byte a second of a frame that never ends, and reopens it a second after
// the proxy closes it.
func (l *load) flood(slow bool) {
	d := net.Dialer{LocalAddr: floodSource, Timeout: 5 * time.Second}
	slowBytes := append(header(1, 0, 0, 200), make([]byte, 200)...)
	for !l.done() {
		l.floodDials.Add(1)
		c, err := d.Dial("tcp", l.p.Addr())
		if err != nil {
			l.floodDialErrs.Add(1)
			select {
			case <-l.stop:
			case <-time.After(time.Second):
			}
			continue
		}
		closed := make(chan struct{})
		go func() {
			io.Copy(io.Discard, c) // until the proxy closes it
			close(closed)
		}()
		tick := time.NewTicker(time.Second)
		for i := 0; ; i++ {
			select {
			case <-tick.C:
				if slow && i < len(slowBytes) {
					c.Write(slowBytes[i : i+1])
				}
				continue
			case <-closed:
			case <-l.stop:
			}
			break
		}
		tick.Stop()
		c.Close()
		<-closed
		select {
		case <-l.stop:
		case <-time.After(time.Second):
		}
	}
}

// guess tries wrong passwords from guessSource with the real challenge
// exchange, as fast as the proxy answers.
func (l *load) guess(user, display string, n int) {
	url := l.p.URL(fmt.Sprintf("%s:wrong-%d", user, n), display)
	for i := 0; !l.done(); i++ {
		_, err := probe.Run(context.Background(), probe.Options{URL: url, Request: probe.Connect,
			LocalAddr: guessSource, Timeout: 30 * time.Second})
		switch {
		case err == nil:
			l.guessBadErr.Store(fmt.Errorf("guess %d: a wrong password was accepted", i))
			return
		case refusal(err) == "authentication failed",
			// answered at the challenge while the source serves a penalty
			strings.HasPrefix(refusal(err), "authentication failed too many failed logins from your address"):
			l.guesses.Add(1)
		case strings.HasPrefix(refusal(err), "too many failed logins from your address"):
			// closed at accept, with the supervisor's line (refuseWithNote)
			l.guessesShut.Add(1)
		case refusal(err) != "":
			l.guessBadErr.Store(fmt.Errorf("guess %d: unexpected refusal %q", i, refusal(err)))
		default:
			l.guessesShut.Add(1) // closed at accept: the source is penalised
		}
		select {
		case <-l.stop:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (l *load) Stop() {
	close(l.stop)
	l.stopped = time.Now()
	l.wg.Wait()
}

// verifiedGuesses counts the password answers from guessSource the
// supervisor checked (each is one "authentication failed" line; answers
// refused under penalty are logged as "login refused").
func verifiedGuesses(logs string) (verified, refusedLate int) {
	peer := "peer=" + guessSource.IP.String() + ":"
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, peer) {
			continue
		}
		switch {
		case strings.Contains(line, `msg="authentication failed"`):
			verified++
		case strings.Contains(line, `msg="login refused"`):
			refusedLate++
		}
	}
	return verified, refusedLate
}

// procStats samples what /proc says about the supervisor and its children.
type procStats struct {
	mu                           sync.Mutex
	maxRSS                       int64 // kB
	maxFDs, maxPreauth, maxRelay int
	samples                      int
}

func (ps *procStats) sample(pid int) {
	st := proclab.Read(pid)
	rss, _ := strconv.ParseInt(strings.TrimSuffix(st.Status["VmRSS"], " kB"), 10, 64)
	preauth, relay := children(pid)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.samples++
	ps.maxRSS = max(ps.maxRSS, rss)
	ps.maxFDs = max(ps.maxFDs, len(st.FDs))
	ps.maxPreauth = max(ps.maxPreauth, preauth)
	ps.maxRelay = max(ps.maxRelay, relay)
}

// watch samples every 200 ms until stop is closed.
func (ps *procStats) watch(pid int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			ps.sample(pid)
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	return &wg
}

// children counts the supervisor's pre-auth and relay processes.
func children(pid int) (preauth, relay int) {
	entries, _ := os.ReadDir("/proc")
	ppid := strconv.Itoa(pid)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut after ')'.
		_, rest, ok := strings.Cut(string(b), ") ")
		if f := strings.Fields(rest); !ok || len(f) < 2 || f[1] != ppid {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		switch {
		case waitingRelay(e.Name()):
			// A warm relay waiting for a login serves no one yet.
		case strings.Contains(string(cmdline), "--preauth"):
			preauth++
		case strings.Contains(string(cmdline), "--relay"):
			relay++
		}
	}
	return preauth, relay
}

// waitingRelay says whether the process is a warm relay waiting for a
// login (it names itself so while it waits).
func waitingRelay(pid string) bool {
	comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
	return strings.TrimSpace(string(comm)) == child.WaitingComm
}

func maxOpenFiles(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			return strings.Join(strings.Fields(line)[3:5], "/")
		}
	}
	return "?"
}

// TestLimitsUnderLoad is issue 4's scenario: a connection flood from one
// address and a password-guessing loop from another do not keep a real
// client from a third address out, guesses are held to the penalties, and
// the supervisor's memory, descriptors and processes stay bounded.
func TestLimitsUnderLoad(t *testing.T) {
	xpralab.Require(t)
	s := xpralab.Start(t, xpralab.Options{Args: []string{"--session-name=limits"}})
	// Default limits (50:30:200, 10 per source, 1 s doubling to 30 s); a
	// short login timeout so the flood's admitted connections churn.
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--login-timeout=10s")
	t.Logf("supervisor %d: open files limit %s", p.Pid(), maxOpenFiles(p.Pid()))
	user := s.User.Username
	good := p.URL(user+":secret", s.Display)

	var ps procStats
	stopWatch := make(chan struct{})
	watching := ps.watch(p.Pid(), stopWatch)
	l := startLoad(t, p, user, s.Display, 4)
	stopped := false
	defer func() {
		if !stopped {
			l.Stop()
		}
	}()

	// Meanwhile, the real client from 127.0.0.1 gets in, again and again,
	// with our probe and with xpra's own client.
	for i := range 5 {
		time.Sleep(2 * time.Second)
		res, err := probe.Run(context.Background(), probe.Options{URL: good, Request: probe.Connect,
			LocalAddr: legitSource, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatalf("login %d under load: %v", i, err)
		}
		if got := res.ReplyCaps().Str("session_name", ""); got != "limits" {
			t.Fatalf("login %d reached %q", i, got)
		}
	}
	if out := xpraClient(t, 60*time.Second, "info", p.URL(user+":secret", "")); !strings.Contains(out, "server.type=xpra-proxy") {
		t.Fatalf("xpra info under load:\n%s", out)
	}
	if out := xpraClient(t, 60*time.Second, "version", p.URL("", "")); !strings.Contains(out, "3.1.3") {
		t.Fatalf("xpra version under load:\n%s", out)
	}
	// Let the guessing run long enough for the penalties to double a few
	// times (1+2+4+8 s).
	for time.Since(l.started) < 20*time.Second {
		time.Sleep(500 * time.Millisecond)
	}
	l.Stop()
	stopped = true
	close(stopWatch)
	watching.Wait()

	if err := syscall.Kill(p.Pid(), 0); err != nil {
		t.Fatalf("the supervisor is gone: %v", err)
	}
	if err, _ := l.guessBadErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	elapsed := l.stopped.Sub(l.started)
	verified, refusedLate := verifiedGuesses(p.Logs())
	t.Logf("%.1f s: flood dials %d (%d failed); guesses answered %d, closed at accept %d; verified by the supervisor %d, refused after admission %d",
		elapsed.Seconds(), l.floodDials.Load(), l.floodDialErrs.Load(), l.guesses.Load(), l.guessesShut.Load(), verified, refusedLate)
	t.Logf("supervisor: max RSS %d kB, max fds %d; max children: %d pre-auth, %d relay (%d samples)",
		ps.maxRSS, ps.maxFDs, ps.maxPreauth, ps.maxRelay, ps.samples)

	// Guesses are held to the penalties: at most one verified a second.
	if verified < 2 || int64(verified) > l.guesses.Load() {
		t.Errorf("the supervisor verified %d guesses, the guessers saw %d refusals: the guessing did not work", verified, l.guesses.Load())
	}
	if limit := int(elapsed.Seconds()) + 1; verified > limit {
		t.Errorf("%d guesses verified in %.1f s: more than %d", verified, elapsed.Seconds(), limit)
	}
	if l.guessesShut.Load() == 0 {
		t.Errorf("no guess was refused at accept: the penalties did not act")
	}
	// The flood got its 10 and no more: most of its connections were
	// closed at accept, and nothing grew with their number.
	if l.floodDials.Load() < 2*floodConns {
		t.Errorf("the flood dialled only %d times", l.floodDials.Load())
	}
	// 10 per source for the flood, the guessers and the real client, and
	// the spare waiting for the next connection.
	if ps.maxPreauth > 31 {
		t.Errorf("%d pre-auth processes at once: more than 3 sources × 10 and a spare", ps.maxPreauth)
	}
	if ps.maxRelay > 5 {
		t.Errorf("%d relay processes at once", ps.maxRelay)
	}
	if ps.maxFDs > 256 {
		t.Errorf("the supervisor held %d descriptors", ps.maxFDs)
	}
	if ps.maxRSS > 128<<10 {
		t.Errorf("the supervisor's RSS reached %d kB", ps.maxRSS)
	}
	if !strings.Contains(p.Logs(), `msg="connection refused"`) || !strings.Contains(p.Logs(), "per-source limit") {
		t.Errorf("no per-source refusal was logged")
	}
	// And after it all, the real client still gets in.
	if got, err := reached(t, good); err != nil || got != "limits" {
		t.Fatalf("after the load the client reached %q: %v", got, err)
	}
}

// TestStartupCap fills the global cap from many sources: no more than
// full are held at once, and a real client gets in once they go.
func TestStartupCap(t *testing.T) {
	xpralab.Require(t)
	s := xpralab.Start(t, xpralab.Options{Args: []string{"--session-name=cap"}})
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--max-startups=4:50:8", "--per-source-max-startups=1")
	good := p.URL(s.User.Username+":secret", s.Display)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// 40 sources, one idle connection each (the per-source cap is 1).
	for i := range 40 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(10+i))}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		// One byte of a header: TCP_DEFER_ACCEPT keeps a connection that
		// sent nothing from the supervisor (TestIdleConnections).
		c.Write([]byte{'P'})
		conns = append(conns, c)
	}
	// The proxy closes what it refuses: read until 32 or more are closed.
	var closed atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, c); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
				closed.Add(1)
			}
		})
	}
	wg.Wait()
	held := len(conns) - int(closed.Load())
	preauth, _ := children(p.Pid())
	t.Logf("held %d of %d; %d pre-auth processes", held, len(conns), preauth)
	// Each held connection has its pre-auth process, and one more waits
	// as the spare for the next connection.
	if held < 4 || held > 8 || preauth > 9 {
		t.Fatalf("held %d connections and %d pre-auth processes, want 4 to 8 and a spare", held, preauth)
	}
	logs := p.Logs()
	if !strings.Contains(logs, "err=\"connection refused: full\"") && !strings.Contains(logs, "random early drop") {
		t.Errorf("no refusal logged:\n%s", logs)
	}
	// Full: a real client is refused too (that is what the cap means)...
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// ...and gets in once the held connections are gone.
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := reached(t, good)
		if err == nil && got == "cap" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the flood the client reached %q: %v", got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BenchmarkLimits times a real client's login through the proxy, alone and
// under TestLimitsUnderLoad's flood and guessing, and reports the guesses
// the supervisor verified per second and its memory (BENCHMARKS.md, "Limits
// under load"). Run it with a time, e.g. -benchtime 20s: the guessing
// rate needs the penalties to run for a while.
func BenchmarkLimits(b *testing.B) {
	xpralab.Require(b)
	s := xpralab.Start(b, xpralab.Options{Args: []string{"--session-name=limits-bench"}})
	user := s.User.Username
	for _, flood := range []bool{false, true} {
		name := "quiet"
		if flood {
			name = "flood"
		}
		b.Run(name, func(b *testing.B) {
			p := proxylab.Start(b, "--tcp-auth=password,value=secret", "--login-timeout=10s")
			good := p.URL(user+":secret", s.Display)
			var ps procStats
			stop := make(chan struct{})
			watching := ps.watch(p.Pid(), stop)
			var l *load
			if flood {
				l = startLoad(b, p, user, s.Display, 4)
				time.Sleep(3 * time.Second) // let the flood build up
			}
			var times []time.Duration
			for b.Loop() {
				start := time.Now()
				res, err := probe.Run(context.Background(), probe.Options{URL: good, Request: probe.Connect,
					LocalAddr: legitSource, Timeout: 30 * time.Second})
				if err != nil || res.ReplyCaps().Str("session_name", "") != "limits-bench" {
					b.Fatalf("login %d: %v", len(times), err)
				}
				times = append(times, time.Since(start))
			}
			b.StopTimer()
			if l != nil {
				l.Stop()
				elapsed := l.stopped.Sub(l.started).Seconds()
				verified, _ := verifiedGuesses(p.Logs())
				b.ReportMetric(float64(verified)/elapsed, "guesses/s")
				b.ReportMetric(float64(l.floodDials.Load())/elapsed, "flood-conns/s")
			}
			close(stop)
			watching.Wait()
			slices.Sort(times)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(times[len(times)/2]), "ms-median")
			b.ReportMetric(ms(times[len(times)*9/10]), "ms-p90")
			b.ReportMetric(float64(ps.maxRSS)/1024, "MiB-max-RSS")
			b.ReportMetric(float64(ps.maxPreauth), "max-preauth")
		})
	}
}
