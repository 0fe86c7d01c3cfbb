// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
)

// findWorker waits for a child of the supervisor running in mode
// ("--relay" or "--preauth") and returns it once past its start-up checks.
func findWorker(t *testing.T, supervisor int, mode string) proclab.Proc {
	t.Helper()
	return findWorkers(t, supervisor, mode, 1)[0]
}

// findWorkers waits until the supervisor has n children in mode, past
// their start-up (no_new_privs set; a pre-auth process also under its
// sandbox, applied last, so what it opens at start-up is closed again).
func findWorkers(t *testing.T, supervisor int, mode string, n int) []proclab.Proc {
	t.Helper()
	var found []proclab.Proc
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		found = found[:0]
		for _, p := range childrenIn(supervisor, mode) {
			if p.Status["NoNewPrivs"] == "1" && (mode != "--preauth" || proclab.Sandboxed(p, proclab.Read(supervisor))) {
				found = append(found, p)
			}
		}
		if len(found) >= n {
			return found
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d %s workers of supervisor %d, want %d", len(found), mode, supervisor, n)
	return nil
}

// childrenIn are the supervisor's child processes of ours in mode.
func childrenIn(supervisor int, mode string) []proclab.Proc {
	var out []proclab.Proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), "xpra-proxy-") || !strings.Contains(string(cmdline), mode) || waitingRelay(e.Name()) {
			continue
		}
		if p := proclab.Read(pid); p.Status["PPid"] == strconv.Itoa(supervisor) {
			out = append(out, p)
		}
	}
	return out
}

// sockets counts the sockets a process holds.
func sockets(p proclab.Proc) int {
	n := 0
	for _, target := range p.FDs {
		if strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}
