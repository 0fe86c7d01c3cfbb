// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/fakexpra"
	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// rssKB reads a process's resident set in kB from /proc.
func rssKB(t testing.TB, pid int) int {
	t.Helper()
	v := strings.TrimSuffix(proclab.Read(pid).Status["VmRSS"], " kB")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		t.Fatalf("VmRSS of %d: %q: %v", pid, v, err)
	}
	return n
}

// blockedIn counts the supervisor's threads by the system call they are
// in (/proc/PID/task/TID/syscall's first field, the number on this
// architecture; "running" when none): what holds the threads of a load.
func blockedIn(pid int, into map[string]int) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, e := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, e.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", pid, e.Name()))
		into[f[0]+"/"+string(wchan)]++
	}
}

// TestThreadsBackToBaseline (issue 19): a burst of concurrent logins
// grows the supervisor's threads (Go keeps the OS thread of every
// concurrent blocking system call: fork/exec and the wait for the
// child's exec above all); once the load is gone, the count goes back to
// what it was after start-up, and the resident set to within a few MB.
func TestThreadsBackToBaseline(t *testing.T) {
	xpralab.Require(t)
	const logins, parallel = 300, 48
	raiseNoFile(t, 4*parallel+256)
	u, uid, gid := xpralab.TestUser(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go fakexpra.Serve(l, "threads")
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte(fmt.Sprintf("%s|secret|%d|%d|tcp://%s/\n", u.Username, uid, gid, l.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	p := proxylab.Start(t, "--tcp-auth=multifile,filename="+users, "--per-source-rate=0", "--per-source-max-startups=0",
		"--max-startups=1000", "--max-relays-per-user=0", "--per-source-penalty=0", "--start-session=never")
	url := p.URL(u.Username+":secret", "")
	pid := p.Pid()
	// The baseline: after start-up has settled (the spare, the control
	// process, a first login's code paged in).
	warm := func() {
		_, nc, err := probe.Open(context.Background(), probe.Options{URL: url, Request: probe.Connect, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatalf("first login: %v", err)
		}
		nc.Close()
	}
	warm()
	time.Sleep(3 * time.Second)
	base, baseRSS := threadsOf(t, pid), rssKB(t, pid)

	var failed atomic.Int64
	var firstErr atomic.Value
	var mu sync.Mutex
	peak := base
	calls := map[string]int{}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			mu.Lock()
			n, _ := strconv.Atoi(proclab.Read(pid).Status["Threads"])
			peak = max(peak, n)
			blockedIn(pid, calls)
			mu.Unlock()
		}
	}()
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for range work {
				_, nc, err := probe.Open(context.Background(), probe.Options{URL: url, Request: probe.Connect, Timeout: 60 * time.Second})
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				time.Sleep(50 * time.Millisecond)
				nc.Close()
			}
		})
	}
	for range logins {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	close(stop)
	<-sampled
	atEnd := threadsOf(t, pid)
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d logins failed, the first: %v", f, logins, firstErr.Load())
	}
	keys := slices.Sorted(maps.Keys(calls))
	var seen []string
	for _, k := range keys {
		seen = append(seen, fmt.Sprintf("%s×%d", k, calls[k]))
	}
	t.Logf("thread samples by system call/wchan during the load: %s", strings.Join(seen, " "))

	// Idle: the relays end with their clients; then the count must come
	// back. 30 s is generous against the supervisor's idle trim.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, relays := children(pid); relays == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("relays still running 60 s after their clients left")
		}
		time.Sleep(200 * time.Millisecond)
	}
	idleFrom := time.Now()
	now := threadsOf(t, pid)
	for now > base && time.Since(idleFrom) < 30*time.Second {
		time.Sleep(500 * time.Millisecond)
		now = threadsOf(t, pid)
	}
	back := time.Since(idleFrom)
	// The resident set: the Go runtime returns freed heap to the kernel
	// in the background (the scavenger) and after a forced GC at most
	// every 2 minutes; wait for it within the same kind of bound.
	rss := rssKB(t, pid)
	for rss > baseRSS+rssAllowanceKB && time.Since(idleFrom) < 150*time.Second {
		time.Sleep(time.Second)
		rss = rssKB(t, pid)
	}
	t.Logf("%d logins, %d at a time: supervisor threads %d after start-up, %d at most, %d as the load ended, %d after %s idle; RSS %.1f MB after start-up, %.1f MB after %s idle",
		logins, parallel, base, peak, atEnd, now, back.Round(100*time.Millisecond),
		float64(baseRSS)/1024, float64(rss)/1024, time.Since(idleFrom).Round(time.Second))
	if peak <= base {
		t.Errorf("the load did not grow the supervisor's threads (%d): the test proves nothing", base)
	}
	if now > base {
		t.Errorf("the supervisor has %d threads 30 s after the load, want its baseline %d", now, base)
	}
	if rss > baseRSS+rssAllowanceKB {
		t.Errorf("the supervisor's RSS is %d kB after the load, want at most %d kB (after start-up) + %d kB",
			rss, baseRSS, rssAllowanceKB)
	}
}

// rssAllowanceKB is how much more than after start-up the supervisor may
// hold once idle again: the replay cache's digests of the burst's logins
// (16 bytes each), the per-source and penalty tables, the heap the GC
// keeps as headroom (GOGC: up to as much again as the live heap, a few MB)
// and the pages of code and data a load touches once and keeps mapped.
// Measured, not guessed: the first load adds 5-7 MB once, then stays
// flat (BENCHMARKS.md's soak: 9.8 MB at start, 15.5 MB after 30 s of
// load, 16.4-16.9 MB for the rest of an hour of 14,399 logins and
// after it; this test at b75bf7d: 10.8 -> 16.0 MB). 8 MB is the soak's
// own verdict bound: a leak of the 181 bytes per login found before
// (replay cache) would pass one burst of 300 here, which is why the
// soak, not this test, is the leak check.
const rssAllowanceKB = 8 * 1024
