// SPDX-License-Identifier: GPL-2.0-or-later

package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Nobody is the unprivileged uid and gid attackers in tests run as.
const Nobody = 65534

// SymlinkSwapper runs, as nobody, a loop that keeps planting path as a
// symlink to target and removing it again, as a user racing root's
// set-up of a socket at path would. It stops when the test ends; stop
// also ends it at once.
func SymlinkSwapper(t testing.TB, path, target string) (stop func()) {
	t.Helper()
	Root(t)
	cmd := exec.Command("/bin/sh", "-c", `while :; do ln -sfn "$1" "$2" 2>/dev/null; rm -f "$2" 2>/dev/null; done`, "swapper", target, path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: Nobody, Gid: Nobody, Groups: []uint32{}}, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the symlink swapper: %v", err)
	}
	done := false
	stop = func() {
		if done {
			return
		}
		done = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its ln and rm too
		_ = cmd.Wait()
	}
	t.Cleanup(stop)
	return stop
}

// OwnerMode is a file's uid, gid and mode bits, to compare before and
// after a race.
type OwnerMode struct {
	UID, GID uint32
	Mode     os.FileMode
}

// StatOwnerMode reads path's OwnerMode without following a symlink.
func StatOwnerMode(t testing.TB, path string) OwnerMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return OwnerMode{UID: st.Uid, GID: st.Gid, Mode: fi.Mode()}
}

// SharedTempDir is t.TempDir made reachable by other users (mode 0755, and
// its parent, which the testing package makes 0700): an unprivileged
// attacker process must be able to walk into it.
func SharedTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// WaitPlanted waits until the swapper has planted its symlink at path at
// least once, so that a race test cannot pass with an attacker that never
// got in.
func WaitPlanted(t testing.TB, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the symlink swapper never planted %s in 10 s", path)
		}
		time.Sleep(time.Millisecond)
	}
}
