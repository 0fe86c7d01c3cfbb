// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// helperPid finds the running helper among our children.
func helperPid(t *testing.T, bin string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(string(b), bin+"\x00--directory") {
			continue
		}
		st := status(t, pid)
		if st["PPid"] == strconv.Itoa(os.Getpid()) {
			return pid
		}
	}
	return 0
}

func status(t *testing.T, pid int) map[string]string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		m[k] = strings.TrimSpace(v)
	}
	return m
}

// TestHelperProcess runs the real helper, as its user and sandboxed,
// against a real PostgreSQL: it answers, it is confined, and killed in the
// middle of a call it fails the call over (ErrUnavailable) and comes back.
func TestHelperProcess(t *testing.T) {
	pglab.Require(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (the helper runs as its own user)")
		}
		t.Skip("needs root: the helper runs as the xpra-proxy-directory user")
	}
	proxylab.EnsurePreauthUser(t)
	// Descriptors the test's own parent leaked to it must not reach the
	// helper (it refuses any it was not given by name); the supervisor's
	// are close-on-exec.
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > 2 {
			syscall.CloseOnExec(n)
		}
	}
	bin := filepath.Join(t.TempDir(), pgdir.ProgramName)
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The user must be able to exec it.
	os.Chmod(filepath.Dir(bin), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(bin)), 0o755)
	u, err := user.Lookup(pgdir.DefaultUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	c := pglab.Start(t)
	db, err := pgdir.Start(pgdir.Config{URI: c.URI(), Timeout: 2 * time.Second, Retry: 200 * time.Millisecond, Name: "t"},
		pgdir.Helper{Path: bin, Cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.AddUser(ctx, pgdir.User{Username: "alice", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	rows, err := db.UserRows(ctx, "alice")
	if err != nil || len(rows) != 1 || rows[0].Password != "pw" {
		t.Fatalf("UserRows: %+v, %v", rows, err)
	}

	pid := helperPid(t, bin)
	if pid == 0 {
		t.Fatal("no helper process")
	}
	st := status(t, pid)
	if f := strings.Fields(st["Uid"]); len(f) < 2 || f[0] != u.Uid || f[1] != u.Uid {
		t.Errorf("helper uid %q, want %s", st["Uid"], u.Uid)
	}
	if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
		t.Errorf("helper NoNewPrivs %q Seccomp %q: not sandboxed", st["NoNewPrivs"], st["Seccomp"])
	}
	// Non-dumpable: /proc/PID files of a non-dumpable process are root's.
	if fi, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/environ"); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("helper is dumpable (environ owned by %v, %v)", fi.Sys().(*syscall.Stat_t).Uid, err)
	}
	fds, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	for _, fd := range fds {
		l, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
		n, _ := strconv.Atoi(fd.Name())
		// stdio, its descriptor, the poller, sockets (the database) and
		// the runtime's cgroup CPU limit files: no other file.
		if n > 2 && !strings.HasPrefix(l, "socket:") && !strings.HasPrefix(l, "anon_inode:") && !strings.HasPrefix(l, "/sys/fs/cgroup/") {
			t.Errorf("helper fd %d is %s", n, l)
		}
	}

	// Killed in the middle of calls: they fail over, and it comes back.
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := db.OtherRelays(ctx, "alice")
			errs <- err
		}()
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for range 20 {
		if err := <-errs; err != nil && !errors.Is(err, pgdir.ErrUnavailable) {
			t.Errorf("a call when the helper died: %v, want nil or ErrUnavailable", err)
		}
	}
	deadline := time.Now().Add(20 * time.Second) // a hang guard: the first backoff is 0.5 s
	for {
		_, err := db.UserRows(ctx, "alice")
		if err == nil {
			break
		}
		if !errors.Is(err, pgdir.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after the helper was killed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p := helperPid(t, bin); p == 0 || p == pid {
		t.Fatalf("helper pid %d after a restart (was %d)", p, pid)
	}
	if !db.Status().Up {
		t.Fatalf("status after the restart: %+v", db.Status())
	}
}
