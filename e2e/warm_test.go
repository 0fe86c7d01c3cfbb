// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

var relayStarted = regexp.MustCompile(`msg="relay worker started" worker=(\d+)`)

// lastRelay is the pid of the relay the proxy started last.
func lastRelay(t *testing.T, p *proxylab.Proxy, n int) int {
	t.Helper()
	var ms [][]string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ms = relayStarted.FindAllStringSubmatch(p.Logs(), -1); len(ms) >= n || time.Now().After(deadline) {
			break
		}
	}
	if len(ms) < n {
		t.Fatalf("%d relays started, want %d:\n%s", len(ms), n, p.Logs())
	}
	pid, _ := strconv.Atoi(ms[n-1][1])
	return pid
}

// TestWarmRelayRealClient: after a user's first login, the next relay
// for that user is started ahead (issue 17: the exec off the setup's
// critical path), and the next logins, over TCP and TLS, are served by
// such relays, with the real 3.1.3 client attached and drawn to as with
// an exec'd relay.
func TestWarmRelayRealClient(t *testing.T) {
	xpralab.Require(t)
	srv := xpralab.Start(t, xpralab.Options{App: "xclock -update 1"})
	bin := proxylab.Build(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "users.sdb")
	for _, args := range [][]string{{"create"}, {"add", "early", "secret-early", fmt.Sprint(srv.UID), fmt.Sprint(srv.GID), srv.TCP(""), "", ""}} {
		if out, err := exec.Command(filepath.Join(bin, "xpra-proxy"), append([]string{"auth", "sqlite", db}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("xpra-proxy auth sqlite %v: %v\n%s", args, err, out)
		}
	}
	cert, key := testCert(t, dir)
	p := proxylab.Start(t, "--tcp-auth=sqlite,filename="+db, "--ssl-cert="+cert, "--ssl-key="+key)
	n := 0
	for i, c := range []struct {
		scheme string
		warm   bool
	}{{"tcp", false}, {"tcp", true}, {"ssl", true}} {
		t.Run(fmt.Sprintf("login %d over %s", i+1, c.scheme), func(t *testing.T) {
			var extra []string
			if c.scheme == "ssl" {
				extra = append(extra, "--ssl-server-verify-mode=none")
			}
			a := startAttach(t, fmt.Sprintf("%s://early:secret-early@%s/", c.scheme, p.Addr()), extra...)
			defer a.stop()
			n++
			pid := lastRelay(t, p, n)
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil {
				t.Fatalf("relay %d: %v", pid, err)
			}
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "xpra-proxy-work" {
				t.Errorf("relay %d serving a client is named %q, want the program's name", pid, comm)
			}
			if warm := bytes.Contains(cmdline, []byte("\x00--early\x00")); warm != c.warm {
				t.Errorf("relay %d: warm %v, want %v (%q)", pid, warm, c.warm, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
			}
			time.Sleep(3 * time.Second)
			if a.disconnected() {
				t.Fatalf("the attached client was disconnected:\n%s", a.out)
			}
		})
	}
	// The next one waits, named so, as the user, not counted as a relay.
	var waiting []int
	for _, e := range childrenOf(t, p.Pid()) {
		if waitingRelay(strconv.Itoa(e)) {
			waiting = append(waiting, e)
		}
	}
	if len(waiting) != 1 {
		t.Fatalf("%d waiting warm relays, want 1", len(waiting))
	}
	if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", waiting[0])); !strings.Contains(string(st), fmt.Sprintf("Uid:\t%d\t", srv.UID)) {
		t.Errorf("the waiting relay does not run as the session's user:\n%s", st)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, relays := children(p.Pid())
		if relays == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d relays counted 20 s after every client left", relays)
		}
	}
}
