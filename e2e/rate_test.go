// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// TestSourceRate: one source opening 1,000 connections as fast as it can
// gets pre-auth processes at the configured rate only, while another
// source's version requests keep being answered.
func TestSourceRate(t *testing.T) {
	xpralab.Require(t)
	const rate, burst = 5, 10
	p := proxylab.Start(t, "--tcp-auth=password,value=secret",
		fmt.Sprintf("--per-source-rate=%d", rate), fmt.Sprintf("--per-source-burst=%d", burst))
	flooder := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	var worst time.Duration
	var answered, failed int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // the other source
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			t0 := time.Now()
			_, err := probe.Run(context.Background(), probe.Options{URL: p.URL("", ""), Request: "version",
				LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}, Timeout: 10 * time.Second})
			if err != nil {
				failed++
				t.Logf("version from the other source: %v", err)
				continue
			}
			answered++
			worst = max(worst, time.Since(t0))
		}
	})
	start := time.Now()
	for range 1000 {
		c, err := flooder.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		c.Write([]byte("x")) // something, so TCP_DEFER_ACCEPT hands it over
		c.Close()
	}
	elapsed := time.Since(start)
	time.Sleep(time.Second) // the last admitted ones are handled
	close(stop)
	wg.Wait()
	handled := 0
	for _, line := range strings.Split(p.Logs(), "\n") {
		// Each pre-auth process that had a connection says how it ended.
		if strings.Contains(line, "stage=preauth") && strings.Contains(line, "msg=\"connection ended") && strings.Contains(line, "peer=127.0.0.2:") {
			handled++
		}
	}
	allowed := burst + int(float64(rate)*(elapsed+time.Second).Seconds()) + 1
	t.Logf("1000 connections in %s: %d given a pre-auth process (at most %d allowed); the other source: %d answered, %d failed, worst %s",
		elapsed.Round(time.Millisecond), handled, allowed, answered, failed, worst.Round(time.Millisecond))
	if handled == 0 || handled > allowed {
		t.Errorf("%d connections of the flooding source got a pre-auth process, want 1..%d", handled, allowed)
	}
	if failed > 0 || answered == 0 {
		t.Errorf("the other source: %d version requests failed, %d answered", failed, answered)
	}
	if worst > 5*time.Second {
		t.Errorf("the other source waited %s for a version answer", worst)
	}
}

// TestUnixShare: one local uid holds at most per-uid-max-startups
// unauthenticated unix-socket connections; another uid still gets in.
func TestUnixShare(t *testing.T) {
	xpralab.Require(t)
	shared := testenv.SharedTempDir(t) // uid 65534 reaches the socket and the probe
	sock := filepath.Join(shared, "proxy.sock")
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--bind-unix="+sock, "--auth=password,value=secret",
		"--per-uid-max-startups=3", "--per-source-rate=0")
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for range 3 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Logs(), "per-uid limit") {
		// Root's fourth connection: closed at accept.
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _ := c.Read(make([]byte, 1))
		c.Close()
		if n != 0 {
			t.Fatal("root's fourth connection was answered")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no per-uid refusal logged:\n%s", p.Logs())
		}
	}
	// Another uid is not held back by root's connections.
	probeBin := filepath.Join(shared, "xpra-probe")
	data, err := os.ReadFile(filepath.Join(proxylab.Build(t), "xpra-probe"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probeBin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(probeBin, "--timeout=10s", "version", "socket://"+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testenv.Nobody, Gid: testenv.Nobody, Groups: []uint32{}}}
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil || !strings.Contains(out, "3.1") {
		t.Fatalf("version as uid 65534: %v\n%s\nproxy log:\n%s", err, out, p.Logs())
	}
}
