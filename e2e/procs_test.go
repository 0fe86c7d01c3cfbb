package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// proc is what /proc says about one of the proxy's processes.
type proc struct {
	pid    int
	status map[string]string
	fds    map[int]string // fd → readlink target
}

// findWorker waits for a child of the supervisor running in mode
// ("--relay" or "--preauth") and returns it once past its start-up checks.
func findWorker(t *testing.T, supervisor int, mode string) proc {
	t.Helper()
	return findWorkers(t, supervisor, mode, 1)[0]
}

// findWorkers waits until the supervisor has n children in mode, past
// their start-up checks (no_new_privs set), and returns them.
func findWorkers(t *testing.T, supervisor int, mode string, n int) []proc {
	t.Helper()
	var found []proc
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		found = found[:0]
		for _, p := range childrenIn(supervisor, mode) {
			if p.status["NoNewPrivs"] == "1" {
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
func childrenIn(supervisor int, mode string) []proc {
	var out []proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), "xpra-proxy-") || !strings.Contains(string(cmdline), mode) {
			continue
		}
		if p := readProc(pid); p.status["PPid"] == strconv.Itoa(supervisor) {
			out = append(out, p)
		}
	}
	return out
}

// sockets counts the sockets a process holds.
func sockets(p proc) int {
	n := 0
	for _, target := range p.fds {
		if strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

func readProc(pid int) proc {
	p := proc{pid: pid, status: map[string]string{}, fds: map[int]string{}}
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			p.status[k] = strings.TrimSpace(v)
		}
	}
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fd, _ := strconv.Atoi(e.Name())
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		p.fds[fd] = target
	}
	return p
}

// checkConfined checks a worker runs as uid/gid with exactly groups, no
// capabilities, no_new_privs, and holds no descriptor beyond stdio,
// sockets and the Go runtime's own.
func checkConfined(t *testing.T, p proc, uid, gid int, groups []string) {
	t.Helper()
	for _, f := range []string{"Uid", "Gid"} {
		want := strconv.Itoa(uid)
		if f == "Gid" {
			want = strconv.Itoa(gid)
		}
		for _, id := range strings.Fields(p.status[f]) {
			if id != want {
				t.Errorf("pid %d: %s %q, want all %s", p.pid, f, p.status[f], want)
				break
			}
		}
	}
	if got := strings.Fields(p.status["Groups"]); strings.Join(got, " ") != strings.Join(groups, " ") {
		t.Errorf("pid %d: groups %v, want %v", p.pid, got, groups)
	}
	for _, f := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb"} {
		if strings.Trim(p.status[f], "0") != "" {
			t.Errorf("pid %d: %s = %s, want none", p.pid, f, p.status[f])
		}
	}
	if p.status["NoNewPrivs"] != "1" {
		t.Errorf("pid %d: NoNewPrivs = %q", p.pid, p.status["NoNewPrivs"])
	}
	for fd, target := range p.fds {
		switch {
		case fd <= 2, strings.HasPrefix(target, "socket:"), strings.HasPrefix(target, "/sys/fs/cgroup/"),
			strings.HasPrefix(target, "anon_inode:"):
		default:
			t.Errorf("pid %d: unexpected descriptor %d → %s", p.pid, fd, target)
		}
	}
}
