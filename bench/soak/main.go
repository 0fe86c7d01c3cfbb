// SPDX-License-Identifier: GPL-2.0-or-later

// Command soak runs xpra-proxy under churn and reports what it leaves
// behind (bench/soak.sh runs it; BENCHMARKS.md has its figures). It
// starts the proxy from --bin, light fake xpra servers for volume, and
// sends connections at --rate from --sources loopback addresses: short
// logins that close at once, long ones held for a while, and wrong
// passwords (from sources of their own, so that their penalties do not
// refuse the others); a share of them goes to real xpra servers
// (--real). Every --interval it prints a line of the table: connections,
// success rate, the supervisor's RSS, threads and fds, live relays,
// pre-auth processes and stale control sockets; at the end a verdict.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
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
	"github.com/xpra-proxy/xpra-proxy/probe"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
)

type options struct {
	bin, userName, real, proxyLog  string
	duration, interval, idle       time.Duration
	longMin, longMax               time.Duration
	rate                           float64
	sources, fakes, port           int
	realShare, longShare, badShare float64
	extra                          string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "directory with xpra-proxy and its workers (scripts/build-bin.sh)")
	flag.StringVar(&o.userName, "user", "xpra-proxy-test", "the account relays run as (owner of the real servers)")
	flag.StringVar(&o.real, "real", "", "displays of real xpra servers of --user, comma separated")
	flag.StringVar(&o.proxyLog, "proxy-log", "/tmp/soak-proxy.log", "where the proxy logs")
	flag.StringVar(&o.extra, "proxy-args", "", "more xpra-proxy arguments, space separated")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to send connections")
	flag.DurationVar(&o.interval, "interval", 30*time.Second, "table line every")
	flag.DurationVar(&o.idle, "idle", 15*time.Second, "idle time after the load (and the held connections) before the last figures")
	flag.DurationVar(&o.longMin, "long-min", 5*time.Second, "shortest hold of a long connection")
	flag.DurationVar(&o.longMax, "long-max", 30*time.Second, "longest hold of a long connection")
	flag.Float64Var(&o.rate, "rate", 4, "new connections a second")
	flag.IntVar(&o.sources, "sources", 49, "loopback sources (127.0.2.1.. for logins, 127.0.3.1.. for wrong passwords)")
	flag.IntVar(&o.fakes, "fakes", 4, "fake servers")
	flag.IntVar(&o.port, "port", 14590, "the proxy's port")
	flag.Float64Var(&o.realShare, "real-share", 0.1, "share of logins that go to a real server")
	flag.Float64Var(&o.longShare, "long-share", 0.3, "share of logins held (long-min..long-max)")
	flag.Float64Var(&o.badShare, "bad-share", 0.1, "share of connections with a wrong password")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

type counts struct{ conns, ok, fail, short, long, bad, penalized, real atomic.Int64 }

type sample struct {
	at                                   time.Duration
	conns, ok, fail                      int64
	rssKB, threads, fds, relays, preauth int
	stale                                int
}

func run(o options) error {
	if o.bin == "" {
		return errors.New("--bin is required")
	}
	u, err := user.Lookup(o.userName)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	tmp, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var rows []string
	rows = append(rows, "# user|password|uid|gid|displays")
	for i := range o.fakes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		go fakexpra.Serve(l, "soak-fake")
		rows = append(rows, fmt.Sprintf("fake%d|pw|%s|%s|tcp://%s/", i, u.Uid, u.Gid, l.Addr()))
	}
	var reals []string
	if o.real != "" {
		reals = strings.Split(o.real, ",")
		rows = append(rows, fmt.Sprintf("real|pw|%s|%s|%s", u.Uid, u.Gid, o.real))
	}
	multi := filepath.Join(tmp, "users")
	if err := os.WriteFile(multi, []byte(strings.Join(rows, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	host, _ := os.Hostname()
	logf, err := os.Create(o.proxyLog)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{fmt.Sprintf("--bind-tcp=127.0.0.1:%d", o.port), "--tcp-auth=multifile,filename=" + multi,
		"--control-socket=" + filepath.Join(tmp, host+"-proxy")}
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
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
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
	dirs := []string{fmt.Sprintf("/run/user/%d/xpra", uid), filepath.Join(u.HomeDir, ".xpra")}
	staleBefore := staleSockets(dirs, host)
	time.Sleep(2 * time.Second) // the spare
	start := time.Now()
	snap := func() sample { return measure(time.Since(start), sup, o.bin, dirs, host) }
	var c counts
	var lat []time.Duration
	var latMu sync.Mutex
	var failures sync.Map // reason -> *atomic.Int64
	fail := func(why string) {
		c.fail.Add(1)
		v, _ := failures.LoadOrStore(why, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}

	fmt.Printf("soak: %v at %.1f/s from %d sources; %.0f%% long (%v-%v), %.0f%% wrong password, %.0f%% of logins to %d real servers, the rest to %d fake ones\n",
		o.duration, o.rate, o.sources, o.longShare*100, o.longMin, o.longMax, o.badShare*100, o.realShare*100, len(reals), o.fakes)
	fmt.Printf("stale control sockets before: %d\n", staleBefore)
	header := fmt.Sprintf("%8s %7s %6s %5s %7s %8s %7s %5s %6s %7s %5s", "time", "conns", "ok", "fail", "succ%", "rss_MB", "threads", "fds", "relays", "preauth", "stale")
	fmt.Println(header)
	line := func(s sample) {
		succ := 100.0
		if s.ok+s.fail > 0 {
			succ = 100 * float64(s.ok) / float64(s.ok+s.fail)
		}
		fmt.Printf("%8s %7d %6d %5d %7.2f %8.1f %7d %5d %6d %7d %5d\n", s.at.Round(time.Second), s.conns, s.ok, s.fail, succ,
			float64(s.rssKB)/1024, s.threads, s.fds, s.relays, s.preauth, s.stale)
	}
	base := snap()
	base.conns, base.ok, base.fail = 0, 0, 0
	line(base)
	samples := []sample{base}

	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
	report := time.NewTicker(o.interval)
	end := time.After(o.duration)
	i := 0
loop:
	for {
		select {
		case <-end:
			break loop
		case <-report.C:
			s := snap()
			s.conns, s.ok, s.fail = c.conns.Load(), c.ok.Load(), c.fail.Load()
			line(s)
			samples = append(samples, s)
		case <-tick.C:
			i++
			n := i
			c.conns.Add(1)
			wg.Go(func() {
				r := rand.Float64()
				src := net.IPv4(127, 0, 2, byte(1+n%o.sources))
				o2 := probe.Options{Request: probe.Connect, LocalAddr: &net.TCPAddr{IP: src}, Timeout: 60 * time.Second}
				if r < o.badShare {
					c.bad.Add(1)
					o2.LocalAddr.IP = net.IPv4(127, 0, 3, byte(1+n%o.sources))
					o2.URL = fmt.Sprintf("tcp://fake0:wrong@%s/", addr)
					_, err := probe.Run(context.Background(), o2)
					var de *conn.DisconnectError
					switch {
					case errors.As(err, &de) && de.Reason == "authentication failed":
						c.ok.Add(1)
					case errors.As(err, &de) && strings.HasPrefix(de.Reason, "too many failed logins from your address"),
						err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)):
						// Refused at accept: the source is serving a penalty
						// for its earlier guesses. Told so in words since the
						// penalty message (e2e TestPenaltyTold), a bare close
						// before it.
						c.ok.Add(1)
						c.penalized.Add(1)
					default:
						fail(fmt.Sprintf("wrong password: %v", err))
					}
					return
				}
				if len(reals) > 0 && rand.Float64() < o.realShare {
					c.real.Add(1)
					o2.URL = fmt.Sprintf("tcp://real:pw@%s/%s", addr, strings.TrimPrefix(reals[n%len(reals)], ":"))
				} else {
					o2.URL = fmt.Sprintf("tcp://fake%d:pw@%s/", n%o.fakes, addr)
				}
				t0 := time.Now()
				long := rand.Float64() < o.longShare/(1-o.badShare)
				res, nc, err := probe.Open(context.Background(), o2)
				if err != nil {
					fail(shorten(err))
					return
				}
				latMu.Lock()
				lat = append(lat, time.Since(t0))
				latMu.Unlock()
				_ = res
				c.ok.Add(1)
				if !long {
					c.short.Add(1)
					nc.Close()
					return
				}
				c.long.Add(1)
				hold := o.longMin + time.Duration(rand.Int64N(int64(o.longMax-o.longMin)+1))
				go io.Copy(io.Discard, nc) // pings and the like
				time.Sleep(hold)
				nc.Close()
			})
		}
	}
	tick.Stop()
	report.Stop()
	wg.Wait()
	// Let the last relays go, and the supervisor sit idle (does it give
	// back what the load took?), then the after figures.
	loadSamples := len(samples)
	idleEnd := time.Now().Add(o.idle)
	for time.Until(idleEnd) > o.interval {
		time.Sleep(o.interval)
		s := snap()
		s.conns, s.ok, s.fail = c.conns.Load(), c.ok.Load(), c.fail.Load()
		line(s)
		samples = append(samples, s)
	}
	time.Sleep(time.Until(idleEnd))
	after := snap()
	after.conns, after.ok, after.fail = c.conns.Load(), c.ok.Load(), c.fail.Load()
	line(after)
	samples = append(samples, after)

	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Millisecond)
	}
	fmt.Printf("\nconnections %d: short %d, long %d, wrong password %d (of which closed at accept under a penalty %d), to real servers %d\n",
		c.conns.Load(), c.short.Load(), c.long.Load(), c.bad.Load(), c.penalized.Load(), c.real.Load())
	fmt.Printf("login latency (hello answered through the proxy): p50 %v, p90 %v, p99 %v, max %v\n", pct(0.5), pct(0.9), pct(0.99), pct(1))
	failures.Range(func(k, v any) bool {
		fmt.Printf("failure x%d: %s\n", v.(*atomic.Int64).Load(), k)
		return true
	})
	succ := 100 * float64(after.ok) / float64(max(1, after.ok+after.fail))
	mid := samples[loadSamples/2] // the middle of the load
	verdict := []string{}
	pass := true
	check := func(ok bool, msg string, a ...any) {
		s := fmt.Sprintf(msg, a...)
		if ok {
			verdict = append(verdict, "ok   "+s)
		} else {
			verdict = append(verdict, "FAIL "+s)
			pass = false
		}
	}
	check(after.stale == 0, "stale control sockets after: %d (before the run: %d)", after.stale, staleBefore)
	check(succ >= 99, "success rate %.2f%% (want >= 99%%)", succ)
	check(after.relays == 0, "live relays after: %d", after.relays)
	check(after.preauth <= 1, "pre-auth processes after: %d (the spare)", after.preauth)
	check(after.fds <= base.fds+2, "supervisor fds: %d before, %d middle, %d after", base.fds, mid.fds, after.fds)
	check(after.rssKB-base.rssKB < 8*1024, "supervisor RSS: %.1f MB before, %.1f middle, %.1f after", float64(base.rssKB)/1024, float64(mid.rssKB)/1024, float64(after.rssKB)/1024)
	// Threads: reported, not judged here (the supervisor's reaping is issue 13).
	verdict = append(verdict, fmt.Sprintf("info supervisor threads: %d before, %d middle, %d after, %d at most",
		base.threads, mid.threads, after.threads, slices.MaxFunc(samples, func(a, b sample) int { return a.threads - b.threads }).threads))
	fmt.Println("\nverdict:")
	for _, v := range verdict {
		fmt.Println("  " + v)
	}
	if !pass {
		fmt.Println("VERDICT: FAIL")
		return errors.New("the soak failed")
	}
	fmt.Println("VERDICT: PASS")
	return nil
}

func shorten(err error) string {
	s := err.Error()
	if i := strings.Index(s, "127.0."); i >= 0 {
		// Addresses and ports make every failure unique.
		s = s[:i] + "ADDR"
	}
	return s
}

// measure reads the supervisor's figures and counts its children and the
// stale control sockets.
func measure(at time.Duration, sup int, bin string, dirs []string, host string) sample {
	s := sample{at: at}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", sup))
	for _, l := range strings.Split(string(status), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			s.rssKB, _ = strconv.Atoi(f[1])
		case "Threads:":
			s.threads, _ = strconv.Atoi(f[1])
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", sup))
	s.fds = len(fds)
	worker, preauth := filepath.Join(bin, "xpra-proxy-worker"), filepath.Join(bin, "xpra-proxy-preauth")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if exe != worker && exe != preauth {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		switch {
		case exe == preauth:
			s.preauth++
		case strings.Contains(string(cmdline), "--relay"):
			s.relays++
		}
	}
	s.stale = staleSockets(dirs, host)
	return s
}

// staleSockets counts control sockets named like ours whose relay is gone.
func staleSockets(dirs []string, host string) int {
	n := 0
	for _, d := range dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			rest, ok := strings.CutPrefix(e.Name(), host+"-proxy-")
			pid, err := strconv.Atoi(rest)
			if !ok || err != nil {
				continue
			}
			if syscall.Kill(pid, 0) == syscall.ESRCH {
				n++
			}
		}
	}
	return n
}
