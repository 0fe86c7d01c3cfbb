// SPDX-License-Identifier: GPL-2.0-or-later

// Package proclab reads what /proc says about a process, for tests that
// check the credentials and descriptors of the proxy's processes.
package proclab

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Proc is one process as /proc showed it when read.
type Proc struct {
	PID    int
	Status map[string]string // /proc/pid/status, field → value
	FDs    map[int]string    // fd → readlink target
}

// Read reads pid's status and descriptors; a process that is gone reads
// as empty maps, which every check below then refuses.
func Read(pid int) Proc {
	p := Proc{PID: pid, Status: map[string]string{}, FDs: map[int]string{}}
	base := filepath.Join("/proc", strconv.Itoa(pid))
	b, _ := os.ReadFile(filepath.Join(base, "status"))
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			p.Status[k] = strings.TrimSpace(v)
		}
	}
	dir := filepath.Join(base, "fd")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fd, _ := strconv.Atoi(e.Name())
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		p.FDs[fd] = target
	}
	return p
}

// CheckIDs checks every uid (real, effective, saved, fs) is uid and every
// gid is gid.
func CheckIDs(t testing.TB, p Proc, uid, gid int) {
	t.Helper()
	for _, c := range []struct {
		field string
		want  int
	}{{"Uid", uid}, {"Gid", gid}} {
		ids := strings.Fields(p.Status[c.field])
		if len(ids) == 0 {
			t.Errorf("pid %d: no %s in /proc (gone?)", p.PID, c.field)
		}
		for _, id := range ids {
			if id != strconv.Itoa(c.want) {
				t.Errorf("pid %d (%s): %s %q, want all %d", p.PID, p.Status["Name"], c.field, p.Status[c.field], c.want)
				break
			}
		}
	}
}

// CheckConfined checks a worker runs as uid/gid with exactly groups (in
// any order: the kernel sorts them), no capabilities, no_new_privs, and
// holds no descriptor beyond stdio, sockets and the Go runtime's own.
func CheckConfined(t testing.TB, p Proc, uid, gid int, groups []string) {
	t.Helper()
	CheckIDs(t, p, uid, gid)
	got := strings.Fields(p.Status["Groups"])
	slices.Sort(got)
	want := slices.Sorted(slices.Values(groups))
	if !slices.Equal(got, want) {
		t.Errorf("pid %d: groups %v, want %v", p.PID, got, want)
	}
	for _, f := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb"} {
		if strings.Trim(p.Status[f], "0") != "" {
			t.Errorf("pid %d: %s = %s, want none", p.PID, f, p.Status[f])
		}
	}
	if p.Status["NoNewPrivs"] != "1" {
		t.Errorf("pid %d: NoNewPrivs = %q", p.PID, p.Status["NoNewPrivs"])
	}
	for fd, target := range p.FDs {
		switch {
		case fd <= 2, strings.HasPrefix(target, "socket:"), strings.HasPrefix(target, "/sys/fs/cgroup/"),
			strings.HasPrefix(target, "anon_inode:"):
		default:
			t.Errorf("pid %d: unexpected descriptor %d → %s", p.PID, fd, target)
		}
	}
}

// Sandboxed reports whether p has applied a seccomp filter of its own,
// stacked on those it inherited from parent (systemd's SystemCallFilter=
// is inherited by every process of the unit). The pre-auth and control
// processes apply theirs last in their start-up (after reading what they
// may no longer open), so a test that checks their descriptors waits for
// this first: before it, a file being read at start-up is open.
func Sandboxed(p, parent Proc) bool {
	filters := func(p Proc) int {
		n, _ := strconv.Atoi(p.Status["Seccomp_filters"])
		return n
	}
	return p.Status["Seccomp"] == "2" && filters(p) > filters(parent)
}
