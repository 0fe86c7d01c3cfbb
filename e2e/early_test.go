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

// TestEarlyRelayRealClient: a user's second login over TCP and over TLS
// is served by a relay exec'd while the real 3.1.3 client answered the
// challenge (issue 17: the exec off the setup's critical path), and the
// client is attached and drawn to as with an ordinary relay.
func TestEarlyRelayRealClient(t *testing.T) {
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
	for _, scheme := range []string{"tcp", "ssl"} {
		extra := []string{}
		if scheme == "ssl" {
			extra = append(extra, "--ssl-server-verify-mode=none")
		}
		url := fmt.Sprintf("%s://early:secret-early@%s/", scheme, p.Addr())
		for i, wantEarly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s login %d", scheme, i+1), func(t *testing.T) {
				a := startAttach(t, url, extra...)
				defer a.stop()
				n++
				pid := lastRelay(t, p, n)
				cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if err != nil {
					t.Fatalf("relay %d: %v", pid, err)
				}
				if early := bytes.Contains(cmdline, []byte("\x00--early\x00")); early != wantEarly {
					t.Errorf("relay %d: early %v, want %v (%q)", pid, early, wantEarly, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
				}
				time.Sleep(3 * time.Second)
				if a.disconnected() {
					t.Fatalf("the attached client was disconnected:\n%s", a.out)
				}
			})
		}
	}
}
