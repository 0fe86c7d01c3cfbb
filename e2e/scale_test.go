// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/fakexpra"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// threadsOf reads a process's thread count from /proc.
func threadsOf(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Threads line in /proc/%d/status", pid)
	return 0
}

// TestThousandRelays: with 1,000 relays held open (real relay workers, as
// the test user, to light fake servers) the supervisor keeps at most 16
// threads: it waits for its children in the poller, not a thread each.
func TestThousandRelays(t *testing.T) {
	xpralab.Require(t)
	n := 1000
	if s := os.Getenv("RELAYS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	raiseNoFile(t, uint64(2*n+256))
	u, uid, gid := xpralab.TestUser(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go fakexpra.Serve(l, "thousand")
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte(fmt.Sprintf("%s|secret|%d|%d|tcp://%s/\n", u.Username, uid, gid, l.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	p := proxylab.Start(t, "--tcp-auth=multifile,filename="+users, "--per-source-rate=0", "--per-source-max-startups=0",
		"--max-startups=1000", "--max-relays-per-user=0", "--per-source-penalty=0", "--start-session=never")
	url := p.URL(u.Username+":secret", "")
	base := threadsOf(t, p.Pid())

	var held []net.Conn
	var mu sync.Mutex
	var failed atomic.Int64
	var firstErr atomic.Value
	maxThreads := base
	sample := func() { maxThreads = max(maxThreads, threadsOf(t, p.Pid())) }
	work := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for range work {
				_, nc, err := probe.Open(context.Background(), probe.Options{URL: url, Request: probe.Connect, Timeout: 60 * time.Second})
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mu.Lock()
				held = append(held, nc)
				mu.Unlock()
			}
		})
	}
	for i := range n {
		work <- struct{}{}
		if i%50 == 0 {
			sample()
		}
	}
	close(work)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	sample()
	opened := time.Since(start)
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d logins failed, the first: %v", f, n, firstErr.Load())
	}
	atHeld := threadsOf(t, p.Pid())
	for _, c := range held {
		c.Close()
	}
	// The relays end as their clients leave.
	deadline := time.Now().Add(60 * time.Second)
	for {
		sample()
		if _, relays := children(p.Pid()); relays == 0 {
			break
		}
		if time.Now().After(deadline) {
			_, relays := children(p.Pid())
			t.Fatalf("%d relays still running 60 s after their clients left", relays)
		}
		time.Sleep(200 * time.Millisecond)
	}
	after := threadsOf(t, p.Pid())
	t.Logf("%d relays opened in %s; supervisor threads: %d before, %d with all held, %d at most, %d after they closed",
		n, opened.Round(time.Millisecond), base, atHeld, maxThreads, after)
	if maxThreads > 16 {
		t.Errorf("the supervisor reached %d threads for %d relays, want at most 16", maxThreads, n)
	}
}
