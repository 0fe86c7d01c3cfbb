// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// preauthChildren counts the supervisor's pre-auth processes (the warm
// spare included).
func preauthChildren(t *testing.T, p *proxylab.Proxy) int {
	t.Helper()
	prog := filepath.Join(p.Bin, "xpra-proxy-preauth")
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != prog {
			continue
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(p.Pid()) {
			n++
		}
	}
	return n
}

// timedLogin is a real login (password, relay worker started, the
// proxy's own info answered by it) from src, and how long it took.
func timedLogin(t *testing.T, p *proxylab.Proxy, src string) time.Duration {
	t.Helper()
	u, _, _ := xpralab.TestUser(t)
	start := time.Now()
	_, err := probe.Run(context.Background(), probe.Options{URL: p.URL(u.Username+":secret", ""), Request: "info",
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("login from %s: %v", src, err)
	}
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestIdleConnections: 500 connections that send nothing get no pre-auth
// process (TCP_DEFER_ACCEPT), do not slow a real login from another
// source, and are closed once the kernel hands them over anyway and the
// first-packet timeout passes. They come from 50 sources (127.0.1.1-50),
// 10 each: per-source-max-startups' default; --max-startups=50 bounds the
// burst of pre-auth processes when the kernel finally accepts them all.
func TestIdleConnections(t *testing.T) {
	const idle, sources, fpt = 500, 50, 10 * time.Second
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--first-packet-timeout="+fpt.String(),
		"--max-startups=50")
	for range 3 {
		timedLogin(t, p, "127.0.0.2") // warm up: caches, the spare
	}
	var before []time.Duration
	for range 5 {
		before = append(before, timedLogin(t, p, "127.0.0.2"))
	}

	start := time.Now()
	var mu sync.Mutex
	var closedAfter []time.Duration
	var wg sync.WaitGroup
	conns := make([]net.Conn, 0, idle)
	for i := range idle {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%sources))}
		d := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		conns = append(conns, c)
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(2 * time.Minute))
			c.Read(make([]byte, 1))
			mu.Lock()
			closedAfter = append(closedAfter, time.Since(start))
			mu.Unlock()
		})
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	t.Logf("%d idle connections open after %v", idle, time.Since(start).Round(time.Millisecond))

	var during []time.Duration
	most := 0
	for range 5 {
		most = max(most, preauthChildren(t, p))
		during = append(during, timedLogin(t, p, "127.0.0.2"))
		time.Sleep(500 * time.Millisecond)
	}
	most = max(most, preauthChildren(t, p))
	if since := time.Since(start); since > 9*time.Second {
		t.Logf("the measurement ran %v after the connections opened: the kernel may have accepted some", since)
	}
	delay := median(during) - median(before)
	t.Logf("real login from 127.0.0.2: median %v before, %v with %d idle connections (delay %v); at most %d pre-auth processes (the spare included)",
		median(before), median(during), idle, delay, most)
	if most > 3 {
		t.Errorf("%d pre-auth processes while %d connections sent nothing: want only the spare (and a login's)", most, idle)
	}
	if delay > 500*time.Millisecond {
		t.Errorf("idle connections delayed a login from another source by %v", delay)
	}

	// Linux accepts them anyway once TCP_DEFER_ACCEPT's retransmissions
	// are over (10 s: about 15 s); the first-packet timeout ends them.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		mu.Lock()
		t.Fatalf("only %d of %d idle connections closed after %v", len(closedAfter), idle, time.Since(start))
	}
	slices.Sort(closedAfter)
	t.Logf("idle connections closed after: first %v, median %v, last %v",
		closedAfter[0].Round(time.Millisecond), closedAfter[len(closedAfter)/2].Round(time.Millisecond),
		closedAfter[len(closedAfter)-1].Round(time.Millisecond))
	if last := closedAfter[len(closedAfter)-1]; last > 15*time.Second+fpt+15*time.Second {
		t.Errorf("the last idle connection closed after %v: want within the deferral (~15 s) and the first-packet timeout", last)
	}
	t.Logf("pre-auth processes after: %d", preauthChildren(t, p))
}
