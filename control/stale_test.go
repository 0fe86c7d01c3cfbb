// SPDX-License-Identifier: GPL-2.0-or-later

package control

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// deadSocket leaves a socket file nobody listens on, as a SIGKILLed
// worker does.
func deadSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

// deadPid is the pid of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestSweepStale(t *testing.T) {
	dir := t.TempDir()
	dead, live := deadPid(t), os.Getppid()
	name := func(host string, pid int) string { return filepath.Join(dir, host+"-proxy-"+strconv.Itoa(pid)) }
	stale := name("h", dead)
	deadSocket(t, stale)
	// A live worker's socket, even refusing (between bind and listen).
	deadSocket(t, name("h", live))
	// Another host's (a home shared over NFS), another display, a file.
	deadSocket(t, name("other", dead))
	deadSocket(t, filepath.Join(dir, "h-10"))
	if err := os.WriteFile(name("h", dead+1), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A listening socket under a dead pid's name is alive: kept.
	l, err := net.Listen("unix", name("h", dead+2))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	removed, err := SweepStale(dir, "h", os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{stale}) {
		t.Errorf("removed %q, want only %q", removed, stale)
	}
	for _, p := range []string{name("h", live), name("other", dead), filepath.Join(dir, "h-10"), name("h", dead+1), name("h", dead+2)} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale socket is still there: %v", err)
	}
	// Another uid's sockets are not ours to judge.
	deadSocket(t, stale)
	if removed, _ := SweepStale(dir, "h", os.Getuid()+1); len(removed) != 0 {
		t.Errorf("removed another uid's sockets: %q", removed)
	}
}
