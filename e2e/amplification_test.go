// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/hostile"
	"github.com/xpra-proxy/xpra-proxy/internal/preauthload"
	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// peakRSSLimit is issue 12's bound on one pre-auth process fed a hostile
// hello: before the decoding budgets, the first input took one to ~290 MB.
const peakRSSLimit = 32 << 10 // kB

// refusalBound tells a refusal from a hello held until the login timeout
// (2 min) or the first-packet timeout (10 s): CI's busy 2 cores took 1.17 s
// once where a quiet machine takes 11-30 ms.
const refusalBound = 5 * time.Second

// TestAmplificationRefused sends each hostile hello of internal/hostile
// through a real proxy whose password module would answer with a
// challenge: each is refused with a disconnect saying why, at once rather
// than held for the login (within refusalBound), and the pre-auth process
// that read it never holds more than 32 MB. The "within 1 s" is
// SECURITY.md's figure from bench/preauthmem on a quiet machine (11-30 ms);
// here the machine may be busy, which a timed assertion would measure.
func TestAmplificationRefused(t *testing.T) {
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--per-source-max-startups=0")
	inputs, err := hostile.Inputs()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		t.Run(in.Name, func(t *testing.T) {
			s := preauthload.NewSampler(p.Pid())
			ctx, stop := context.WithCancel(context.Background())
			sampled := make(chan struct{})
			go func() { s.Run(ctx, 5*time.Millisecond); close(sampled) }()
			res := preauthload.Attack(context.Background(), p.Addr(), in.Wire, preauthload.Sources(10, 1), 1, 10*time.Second)[0]
			stop()
			<-sampled
			peaks := s.Peaks()
			peak := slices.Max(append(slices.Collect(maps.Values(peaks)), 0))
			t.Logf("%d wire bytes: reply after %v, closed after %v, peak RSS %d kB over %d pre-auth processes (%d samples): %q",
				len(in.Wire), res.Answered, res.Took, peak, len(peaks), s.Samples, res.Reply)
			switch {
			case res.DialErr != nil:
				t.Fatal(res.DialErr)
			case res.TimedOut:
				t.Fatal("the connection was still open after 10 s")
			case !bytes.Contains(res.Reply, []byte("protocol error")) || !bytes.Contains(res.Reply, []byte("before authentication")):
				t.Fatalf("reply %q, want a protocol error disconnect saying why", res.Reply)
			case res.Answered > refusalBound:
				t.Errorf("refused after %v, want at once (within %v; a held hello waits for the 2 min login timeout)", res.Answered, refusalBound)
			}
			if peak == 0 {
				t.Fatal("no pre-auth process was sampled")
			}
			if peak > peakRSSLimit {
				t.Errorf("a pre-auth process peaked at %d kB RSS, more than %d kB", peak, peakRSSLimit)
			}
		})
	}
	if !strings.Contains(p.Logs(), `level=WARN msg="hello over the pre-auth budget"`) {
		t.Errorf("the refusals were not logged as warnings")
	}
}

// TestAmplificationLoad is the scale of issue 12: 200 hostile hellos at
// once from 20 sources (the per-source default of 10 each; max-startups
// raised to 201 so that random early drop lets all of them in and the
// real client too). The sum of all pre-auth RSS stays within 2 GB
// (before the budgets it would have been ~57 GB), and a real `xpra
// version` through the proxy answers meanwhile.
func TestAmplificationLoad(t *testing.T) {
	xpralab.Require(t)
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--max-startups=201")
	raiseNoFile(t, 4096)
	in, err := hostile.Amplification(wire.Rencode, compress.Zlib, hostile.Decompressed)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out := xpraClient(t, 60*time.Second, "version", p.URL("", "")); !strings.Contains(out, "3.1.3") {
		t.Fatalf("xpra version before the load:\n%s", out)
	}
	quiet := time.Since(start)
	availBefore := preauthload.MemAvailable()
	s := preauthload.NewSampler(p.Pid())
	ctx, stop := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() { s.Run(ctx, 20*time.Millisecond); close(sampled) }()
	version := make(chan time.Duration, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // while the attack is on
		start := time.Now()
		out := xpraClient(t, 60*time.Second, "version", p.URL("", ""))
		if !strings.Contains(out, "3.1.3") {
			t.Errorf("xpra version during the load:\n%s", out)
		}
		version <- time.Since(start)
	}()
	res := preauthload.Attack(context.Background(), p.Addr(), in.Wire, preauthload.Sources(10, 20), 200, 30*time.Second)
	during := <-version
	stop()
	<-sampled
	var answered, closedEarly, timedOut int
	var answers []time.Duration
	for _, r := range res {
		switch {
		case r.DialErr != nil:
			t.Errorf("%s: %v", r.Source, r.DialErr)
		case r.TimedOut:
			timedOut++
		case len(r.Reply) == 0:
			closedEarly++
		default:
			answered++
			answers = append(answers, r.Answered)
			if !bytes.Contains(r.Reply, []byte("protocol error")) {
				t.Errorf("%s: reply %q", r.Source, r.Reply)
			}
		}
	}
	slices.Sort(answers)
	peaks := slices.Sorted(maps.Values(s.Peaks()))
	t.Logf("200 connections: %d refused with a disconnect (reply after median %v, max %v), %d closed without one, %d still open",
		answered, pick(answers, 50), pick(answers, 100), closedEarly, timedOut)
	t.Logf("pre-auth processes: %d seen, peak RSS median %d kB, max %d kB; largest sum of RSS %d kB (%d at once, %d samples)",
		len(peaks), pick(peaks, 50), pick(peaks, 100), s.MaxSum, s.MaxProcs, s.Samples)
	t.Logf("MemAvailable before %d kB, lowest during %d kB; xpra version %v quiet, %v during the load",
		availBefore, s.MinAvail, quiet.Round(time.Millisecond), during.Round(time.Millisecond))
	if timedOut > 0 {
		t.Errorf("%d hostile connections were still open after 30 s", timedOut)
	}
	if answered < 150 {
		t.Errorf("only %d of 200 got a disconnect: the load did not reach the pre-auth processes", answered)
	}
	if s.MaxSum > 2<<20 {
		t.Errorf("the pre-auth processes held %d kB at once, more than 2 GB", s.MaxSum)
	}
	if len(peaks) > 0 && peaks[len(peaks)-1] > peakRSSLimit {
		t.Errorf("a pre-auth process peaked at %d kB", peaks[len(peaks)-1])
	}
	// A generous bound (SECURITY.md has the figures: 0.4-0.5 s where the
	// machine is the test's, 5-6 s on two cores shared with some forty
	// other busy tasks; the /proc sampling above costs CPU too): the real
	// client must get its answer, and before the budgets 200 such hellos
	// would have asked for ~57 GB.
	if during > 30*time.Second {
		t.Errorf("xpra version took %v during the load, %v without", during, quiet)
	}
}

// pick returns the pct-th percentile of sorted s (zero when empty).
func pick[T any](s []T, pct int) T {
	var zero T
	if len(s) == 0 {
		return zero
	}
	return s[min(len(s)-1, len(s)*pct/100)]
}

// TestPreauthDeathPenalized: a pre-auth process that dies abnormally
// before its verdict (here SIGKILL, as the kernel's OOM killer would send;
// Go's own "out of memory" exits 2 and is counted the same) is a failed
// login for its source, logged as a warning with the cause; other sources
// are not affected.
func TestPreauthDeathPenalized(t *testing.T) {
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--per-source-penalty=30s", "--per-source-penalty-max=60s")
	p.ExpectLog(`pre-auth process died before a verdict.* cause="killed by signal killed"`) // the SIGKILL below
	victim, other := preauthload.Sources(41, 2)[0], preauthload.Sources(41, 2)[1]
	hello := conn.Packet{"hello", value.Dict{
		{Key: "version", Value: "3.1.3"},
		{Key: "digest", Value: []any{"hmac+sha256"}},
		{Key: "salt-digest", Value: []any{"hmac+sha256"}},
	}}
	// challenged dials from src, sends the hello and waits for the
	// challenge: the pre-auth process is then waiting for the answer.
	challenged := func(src net.IP) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		nc, err := d.Dial("tcp", p.Addr())
		if err != nil {
			return nil, err
		}
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		c := conn.New(nc)
		if err := c.WritePacket(hello); err != nil {
			nc.Close()
			return nil, err
		}
		pk, err := c.ReadPacket()
		if err != nil {
			nc.Close()
			return nil, err
		}
		if pk[0] != "challenge" {
			nc.Close()
			return nil, fmt.Errorf("got %v, want a challenge", pk[0])
		}
		return nc, nil
	}
	nc, err := challenged(victim)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The pre-auth process holding the connection: the one with two
	// sockets (its channel and the client); a waiting spare has one.
	var pid int
	for _, c := range preauthload.PreauthChildren(p.Pid()) {
		if n := strings.Count(strings.Join(slices.Collect(maps.Values(proclab.Read(c).FDs)), " "), "socket:"); n >= 2 {
			pid = c
		}
	}
	if pid == 0 {
		t.Fatal("no pre-auth process holds the connection")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The client sees its connection end without a verdict...
	if _, err := io.ReadAll(nc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading after the kill: %v", err)
	}
	// ...the supervisor logs why and penalises the source: its next
	// connection is closed at accept, with nothing read.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Logs(), "counted as a failed login") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.Logs(), `level=WARN msg="pre-auth process died before a verdict: counted as a failed login"`) ||
		!strings.Contains(p.Logs(), "killed by signal killed") {
		t.Fatalf("no warning with the cause in the log")
	}
	if c, err := challenged(victim); err == nil {
		c.Close()
		t.Fatal("the source of the dead pre-auth process was not penalised")
	}
	// The supervisor logs a refusal after closing the connection.
	penalised := func() bool {
		for _, line := range strings.Split(p.Logs(), "\n") {
			if strings.Contains(line, "penalty until") && strings.Contains(line, "peer="+victim.String()+":") {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(5 * time.Second); !penalised() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if !penalised() {
		t.Errorf("the refusal of %s was not logged as a penalty", victim)
	}
	c, err := challenged(other)
	if err != nil {
		t.Fatalf("another source: %v", err)
	}
	c.Close()
}
