// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// TestRemovalTellsClients plays the package's removal (debian/prerm,
// rpm's %preun) against attached real xpra 3.1.3 clients: the supervisor
// gets SIGTERM and exits (`systemctl stop`, KillMode=process), then every
// process left in the service's cgroup gets SIGTERM at once (`systemctl
// kill`): the relays and the TLS/WebSocket transport processes. Each
// client must hear "server shutdown" (what packaging/README.md promises),
// not lose its connection: for TLS that needs the transport process to
// carry the relay's goodbye before it goes.
func TestRemovalTellsClients(t *testing.T) {
	xpralab.Require(t)
	testenv.Command(t, "xvfb-run")
	srv := xpralab.StartAll(t, xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=removal"}})[0]
	user := srv.User.Username
	cert, key := testCert(t, t.TempDir())
	display := strings.TrimPrefix(srv.Display, ":")
	for _, scheme := range []string{"tcp", "ssl", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--ssl-cert="+cert, "--ssl-key="+key)
			a := startAttach(t, fmt.Sprintf("%s://%s:secret@%s/%s", scheme, user, p.Addr(), display), "--ssl-server-verify-mode=none")
			kids := childrenOf(t, p.Pid())
			if len(kids) == 0 {
				t.Fatal("the supervisor has no children")
			}
			if err := syscall.Kill(p.Pid(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			// (Not p.Done: that waits for the log pipe, which the relays hold.)
			waitUntil(t, 20*time.Second, "the supervisor to exit after SIGTERM", func() bool { return !alive(p.Pid()) })
			// Still attached: a stop leaves relays alone.
			time.Sleep(time.Second)
			if a.disconnected() {
				t.Fatalf("the client lost its session when the supervisor stopped:\n%s", a.out)
			}
			for _, k := range kids { // systemctl kill: all at once
				_ = syscall.Kill(k, syscall.SIGTERM)
			}
			waitUntil(t, 20*time.Second, "the client to say it was disconnected", func() bool {
				s := strings.ToLower(a.out.String())
				return strings.Contains(s, "server shutdown") || strings.Contains(s, "connection lost") || strings.Contains(s, "disconnect")
			})
			time.Sleep(2 * time.Second) // the rest of what it prints
			out := a.out.String()
			t.Logf("client's last lines:\n%s", tail(out, 8))
			if !strings.Contains(out, "server shutdown") {
				t.Errorf("the %s client was not told \"server shutdown\":\n%s", scheme, tail(out, 20))
			}
			for _, k := range kids {
				waitUntil(t, 10*time.Second, fmt.Sprintf("process %d to end", k), func() bool { return !alive(k) })
			}
		})
	}
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
