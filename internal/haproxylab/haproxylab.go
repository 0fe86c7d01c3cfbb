// SPDX-License-Identifier: GPL-2.0-or-later

// Package haproxylab runs Debian's real HAProxy for a test, in front of
// proxies that take its PROXY protocol v2 header (e2e and the systemd
// testbed's e2e/service).
package haproxylab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
)

// Start runs haproxy (bin) in the foreground with a config of its own:
// one TCP frontend at front, round robin over backends, each sent a PROXY
// v2 header, until t ends. It returns once the frontend accepts a
// connection, dialled from probeFrom (nil: the kernel's choice); HAProxy
// passes that probe on to a backend with its address, so a test that
// checks the addresses its proxies log picks one they may see. The
// result is HAProxy's log.
func Start(t testing.TB, bin, front string, probeFrom net.IP, backends ...string) *proxylab.Buffer {
	t.Helper()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `global
    maxconn 200
    log stdout format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 120s
    timeout server 120s

frontend xpra
    bind %s
    default_backend proxies

backend proxies
    balance roundrobin
`, front)
	for i, b := range backends {
		fmt.Fprintf(&cfg, "    server proxy%d %s send-proxy-v2\n", i, b)
	}
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", file)
	out := &proxylab.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy's log:\n%s", out)
		}
	})
	probe := net.Dialer{Timeout: time.Second}
	if probeFrom != nil {
		probe.LocalAddr = &net.TCPAddr{IP: probeFrom}
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := probe.Dial("tcp", front); err == nil {
			c.Close()
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not listening on %s after 15 s:\n%s", front, out)
		}
	}
}
