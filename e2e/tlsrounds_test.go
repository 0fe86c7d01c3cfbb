// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpra6lab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/version"
)

// realClient is one xpra client program with the environment it runs in.
type realClient struct {
	version string // what `xpra --version` says, for the logs and SECURITY.md
	bin     string
	env     []string
	// trust is how this client accepts the test certificate: 3.1.3 by
	// not verifying, 6.x (which checks host names even then) by trusting it.
	trust func(cert string) string
}

// system313 is Debian's xpra 3.1.3 client, run as root like an admin would.
func system313() realClient {
	return realClient{version: "3.1.3", bin: "xpra",
		env:   []string{"PATH=" + cleanPath, "HOME=/root", "LANG=C.UTF-8", "XDG_RUNTIME_DIR=/run/user/0"},
		trust: func(string) string { return "--ssl-server-verify-mode=none" }}
}

// xpra6Client is the private xpra 6.x build (package xpra6lab), trusting
// the test certificate. why says where it is missing: scripts/test-all.sh
// builds it (scripts/ensure-xpra6.sh), so CI runs it.
func xpra6Client(t *testing.T) (c realClient, why string) {
	t.Helper()
	if why := xpra6lab.Missing(); why != "" {
		return c, why
	}
	c6 := xpra6lab.NewClient(t)
	return realClient{version: c6.Version, bin: c6.Bin, env: c6.Env,
		trust: func(cert string) string { return "--ssl-ca-certs=" + cert }}, ""
}

func (c realClient) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	cmd.Dir = "/"
	return cmd
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// envCount reads a positive count from the environment, else def.
func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a count", name, s)
	}
	return n
}

// clientRun is one real client's run: its output and how long it took.
type clientRun struct {
	out string
	d   time.Duration
}

// TestTLSRounds runs real xpra clients through the proxy over TLS and
// WSS, back to back and in parallel, for a version request (answered by
// the pre-auth process) and an info request (through a relay worker to a
// real server): every run must get its answer, within a generous bound,
// and our own logs must hold no error. This is issue 12's "TLS and WSS
// that never fail": before the fix, 2 to 4 runs in 10 of `xpra version
// ssl://` ended silently.
//
// TLS_ROUNDS (back to back, default 10) and TLS_PARALLEL (at once, default
// 8) are per client, transport and command; SECURITY.md has a full run
// (500 and 50) and the command for it. The real 6.x client runs too where
// /opt/xpra6 is built (scripts/test-all.sh builds it; elsewhere a missing
// build is skipped, with a message).
func TestTLSRounds(t *testing.T) {
	xpralab.Require(t)
	rounds := envCount(t, "TLS_ROUNDS", 10)
	parallel := envCount(t, "TLS_PARALLEL", 8)
	srv := xpralab.Start(t, xpralab.Options{Args: []string{"--session-name=tls-rounds"}})
	cert, key := testCert(t, t.TempDir())
	// Every client comes from 127.0.0.1, many at once: no per-source cap
	// or rate (50 clients started at once outrun the default 5 a second
	// whenever their start-ups bunch up), and room for the parallel runs
	// before sshd-style early drops.
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--ssl-cert="+cert, "--ssl-key="+key,
		"--per-source-max-startups=0", "--per-source-penalty=0", "--per-source-rate=0",
		fmt.Sprintf("--max-startups=%d", 2*parallel+10))
	creds := srv.User.Username + ":secret"
	// proxylab.Start's readiness check connects and says nothing, which
	// our pre-auth process logs: wait for that line, so that only the
	// clients' connections are judged below.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Logs(), "peek after 0 bytes: EOF"); {
		if time.Now().After(deadline) {
			t.Fatalf("the readiness check's connection was not logged:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}

	clients := []realClient{system313()}
	if c6, why := xpra6Client(t); why != "" {
		// scripts/test-all.sh builds it (scripts/ensure-xpra6.sh): under CI
		// a missing build is a failure, elsewhere a skip.
		if os.Getenv("CI") == "true" {
			t.Fatalf("the xpra 6.5.3 client: %s", why)
		}
		t.Run("xpra 6.x", func(t *testing.T) { t.Skipf("skipped: %s", why) })
	} else {
		clients = append(clients, c6)
	}
	for _, c := range clients {
		for _, scheme := range []string{"ssl", "wss"} {
			for _, req := range []string{"version", "info"} {
				t.Run(fmt.Sprintf("xpra %s %s over %s", c.version, req, scheme), func(t *testing.T) {
					url := fmt.Sprintf("%s://%s/", scheme, p.Addr())
					want := "\n" + proxyVersionFor(c) + "\n"
					if req == "info" {
						url = fmt.Sprintf("%s://%s@%s/", scheme, creds, p.Addr())
						want = "server.type=xpra-proxy"
					}
					args := []string{req, url, c.trust(cert)}
					mark := len(p.Logs())
					// A generous bound per run: the client's start-up is
					// 0.5-1 s of python, and one run in 2000 took 19 s on
					// a shared two-core machine at load 11; the failure
					// this guards against was a 40 s stall (the client's
					// own timeout). Parallel runs share the cores.
					var runs []clientRun
					for range rounds {
						runs = append(runs, runClient(c, args))
					}
					checkRuns(t, "back to back", runs, want, runBound)
					var wg sync.WaitGroup
					batch := make([]clientRun, parallel)
					for i := range batch {
						wg.Go(func() { batch[i] = runClient(c, args) })
					}
					wg.Wait()
					checkRuns(t, "in parallel", batch, want, runBound+time.Duration(parallel)*time.Second)
					checkOurLogs(t, p.Logs()[mark:])
				})
			}
		}
	}
}

// runBound is the longest a single client run may take back to back.
const runBound = 30 * time.Second

// proxyVersionFor is what our pre-auth stage answers c's version request
// with: the release of c's own dialect (version.For).
func proxyVersionFor(c realClient) string {
	return version.For(!strings.HasPrefix(c.version, "3."))
}

// runClient runs the client once, killing it after two minutes.
func runClient(c realClient, args []string) clientRun {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run() // the exit code varies with xpra's version; the output says what happened
	d := time.Since(start)
	if ctx.Err() != nil {
		fmt.Fprintf(&out, "\n(killed after %s: %v)", d, err)
	}
	return clientRun{out: "\n" + out.String(), d: d}
}

// checkRuns fails on every run that lacks want or took longer than bound,
// and logs the count, median and worst time.
func checkRuns(t *testing.T, what string, runs []clientRun, want string, bound time.Duration) {
	t.Helper()
	if len(runs) == 0 {
		return
	}
	failed := 0
	ds := make([]time.Duration, len(runs))
	for i, r := range runs {
		ds[i] = r.d
		if !strings.Contains(r.out, want) {
			failed++
			if failed <= 5 {
				t.Errorf("%s, run %d of %d, after %s: no %q in:%s", what, i+1, len(runs), r.d.Round(time.Millisecond), strings.TrimSpace(want), r.out)
			}
		} else if r.d > bound {
			t.Errorf("%s, run %d of %d took %s (bound %s)", what, i+1, len(runs), r.d.Round(time.Millisecond), bound)
		}
	}
	slices.Sort(ds)
	t.Logf("%s: %d runs, %d failed, median %s, worst %s", what, len(runs), failed,
		ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%s: %d of %d runs failed", what, failed, len(runs))
	}
}

// checkOurLogs fails on anything our processes logged as going wrong
// while the clients ran: a warning or an error, a panic, a connection
// that ended with an error, a TLS or WebSocket failure.
func checkOurLogs(t *testing.T, logs string) {
	t.Helper()
	var bad []string
	for line := range strings.SplitSeq(logs, "\n") {
		switch {
		case strings.Contains(line, "level=WARN"), strings.Contains(line, "level=ERROR"),
			strings.Contains(line, "panic"), strings.Contains(line, "ended before authentication"),
			strings.Contains(line, "msg=\"connection ended\"") && strings.Contains(line, " err="),
			strings.Contains(line, "tls:"), strings.Contains(line, "websocket:"):
			bad = append(bad, line)
		}
	}
	if len(bad) > 0 {
		t.Errorf("our processes logged %d lines of trouble, the first:\n%s", len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
}
