// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// warmPids are the pids of the warm relays the supervisor started.
func warmPids(sv *served) []int {
	sv.logs.mu.Lock()
	defer sv.logs.mu.Unlock()
	var pids []int
	re := regexp.MustCompile(`msg="warm relay waiting" .*worker=(\d+)`)
	for _, l := range sv.logs.lines.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			pids = append(pids, n)
		}
	}
	return pids
}

func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	// Ended, or a zombie its reaper has not collected yet.
	return os.IsNotExist(err) || (err == nil && strings.Contains(string(b), ") Z "))
}

// TestWarmRelay: after a login, the next relay for its identity is
// started ahead and waits; the next login as that identity is given it,
// over any listener; a wrong password neither takes nor starts one; a
// reload ends the waiting one; warm-relays=0 starts none.
func TestWarmRelay(t *testing.T) {
	sv := serveDoubles(t)

	// First login: nothing waits, the relay is exec'd after the verdict.
	c1, line := sv.login(t, "unix", "nobody secret")
	if r := report(t, line); slices.Contains(r.Args, "--early") || r.UID != 65534 {
		t.Fatalf("first login: relay %v as uid %d, want an ordinary relay as nobody", r.Args, r.UID)
	}
	c1.Close()
	eventually(t, "a warm relay for nobody waiting", func() bool { return len(warmPids(sv)) == 1 })
	waiting := warmPids(sv)[0]
	if st, err := os.ReadFile("/proc/" + strconv.Itoa(waiting) + "/status"); err != nil || !strings.Contains(string(st), "Uid:\t65534\t") {
		t.Fatalf("warm relay %d: %v\n%s", waiting, err, st)
	}

	// A wrong password takes nothing and starts nothing.
	if _, line := sv.login(t, "unix", "nobody wrong"); line != `denied: authentication failed []` {
		t.Fatalf("wrong password: got %q", line)
	}
	if gone(waiting) || len(warmPids(sv)) != 1 {
		t.Fatalf("after a wrong password: warm relay %d gone %v, warm relays started %v", waiting, gone(waiting), warmPids(sv))
	}

	// Second login, over TCP: the waiting relay gets it, and what an
	// exec'd relay gets on its command line comes in the launch document.
	c2, line := sv.login(t, "tcp", "nobody secret")
	r := report(t, line)
	if !slices.Contains(r.Args, "--early") || r.UID != 65534 || r.GID != 65534 {
		t.Fatalf("second login: relay %v as uid %d gid %d, want the warm relay as nobody", r.Args, r.UID, r.GID)
	}
	if l := r.Launch; l.Username != "nobody" || l.UID != 65534 || l.Listener != "tcp" || l.Transport != "tcp" || l.Peer != c2.LocalAddr().String() ||
		l.SetupStart == 0 || !r.Memfd || r.Handover != "handed over for nobody" {
		t.Errorf("warm relay's launch %+v, hand-over %q (memfd %v)", l, r.Handover, r.Memfd)
	}
	if !slices.Contains(r.Env, "USER=nobody") || !slices.Contains(r.Env, "XDG_RUNTIME_DIR=/run/user/65534") {
		t.Errorf("warm relay's environment %q", r.Env)
	}
	var pid int
	for _, rec := range registered(t, sv) {
		if rec.Source == c2.LocalAddr().String() {
			pid = rec.Pid
		}
	}
	if pid != waiting {
		t.Errorf("registered relay %d, want the warm one %d", pid, waiting)
	}
	// And the next one waits already.
	eventually(t, "the next warm relay", func() bool { return len(warmPids(sv)) == 2 })
	c2.Close()
	eventually(t, "the relay's end counted", func() bool { return sv.s.relays.Load() == 0 })

	// A reload: the waiting relay was started under the settings before.
	next := warmPids(sv)[1]
	if err := sv.s.Reload(func() (Config, error) { return sv.s.cfg, nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the warm relay ended by the reload", func() bool { return gone(next) })
	c3, line := sv.login(t, "unix", "nobody secret")
	if r := report(t, line); slices.Contains(r.Args, "--early") {
		t.Errorf("after a reload: relay %v, want an exec'd one", r.Args)
	}
	c3.Close()
}

func TestWarmRelaysOff(t *testing.T) {
	sv := serveDoubles(t, "--warm-relays=0")
	for range 2 {
		c, line := sv.login(t, "unix", "nobody secret")
		if r := report(t, line); slices.Contains(r.Args, "--early") {
			t.Errorf("warm-relays=0: relay %v", r.Args)
		}
		c.Close()
		eventually(t, "the relay's end counted", func() bool { return sv.s.relays.Load() == 0 })
	}
	if n := len(warmPids(sv)); n != 0 {
		t.Errorf("warm-relays=0: %d warm relays started", n)
	}
}
