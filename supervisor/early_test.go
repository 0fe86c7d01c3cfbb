// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// earlyPids are the pids of the early relays the supervisor logged.
func earlyPids(sv *served) []int {
	sv.logs.mu.Lock()
	defer sv.logs.mu.Unlock()
	var pids []int
	re := regexp.MustCompile(`msg="early relay waiting" .*worker=(\d+)`)
	for _, l := range sv.logs.lines.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			pids = append(pids, n)
		}
	}
	return pids
}

func gone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return os.IsNotExist(err)
}

// TestEarlyRelay: a login name granted an identity before gets its relay
// exec'd during the challenge, and the relay gets the connection only
// after the verdict; a wrong password, or a verdict granting another
// identity, ends the waiting relay, which was given nothing.
func TestEarlyRelay(t *testing.T) {
	sv := serveDoubles(t)

	// First login: nothing known, the relay is exec'd after the verdict.
	c1, line := sv.login(t, "unix", "nobody secret")
	if r := report(t, line); slices.Contains(r.Args, "--early") || r.UID != 65534 {
		t.Fatalf("first login: relay %v as uid %d, want an ordinary relay as nobody", r.Args, r.UID)
	}
	c1.Close()
	if n := len(earlyPids(sv)); n != 0 {
		t.Fatalf("%d early relays before any identity was granted", n)
	}

	// Second: exec'd early, as the same identity, and given the same.
	c2, line := sv.login(t, "unix", "nobody secret")
	r := report(t, line)
	if !slices.Contains(r.Args, "--early") || r.UID != 65534 || r.GID != 65534 {
		t.Fatalf("second login: relay %v as uid %d gid %d, want an early relay as nobody", r.Args, r.UID, r.GID)
	}
	if l := r.Launch; l.Username != "nobody" || l.UID != 65534 || !r.Memfd || r.Handover != "handed over for nobody" {
		t.Errorf("early relay's launch %+v, hand-over %q (memfd %v)", l, r.Handover, r.Memfd)
	}
	if !slices.Contains(r.Env, "USER=nobody") || !slices.Contains(r.Env, "XDG_RUNTIME_DIR=/run/user/65534") {
		t.Errorf("early relay's environment %q", r.Env)
	}
	eventually(t, "the setup timeline with the early exec", func() bool {
		return sv.logs.hasLine(`msg="setup timeline"`, "result=relayed", " early_exec=")
	})
	c2.Close()
	eventually(t, "the early relay's end counted", func() bool { return sv.s.relays.Load() == 0 })

	// A wrong password: an early relay starts, gets nothing, and ends.
	before := len(earlyPids(sv))
	if _, line := sv.login(t, "unix", "nobody wrong"); line != `denied: authentication failed []` {
		t.Fatalf("wrong password: got %q", line)
	}
	pids := earlyPids(sv)
	if len(pids) != before+1 {
		t.Fatalf("wrong password for a known name: %d early relays, want %d", len(pids), before+1)
	}
	eventually(t, "the dropped early relay gone", func() bool { return gone(pids[len(pids)-1]) })
	if sv.s.relays.Load() != 0 || len(registered(t, sv)) != 0 {
		t.Errorf("a dropped early relay counted: relays %d, registry %v", sv.s.relays.Load(), registered(t, sv))
	}

	// The identity changed since (here: remembered wrong): the waiting
	// relay is not used, an ordinary one runs as the verdict says.
	// daemon: an account that exists, not nobody.
	sv.s.granted.put("unix", "nobody", grantedID{uid: 1, gid: 1})
	before = len(pids)
	c3, line := sv.login(t, "unix", "nobody secret")
	if r := report(t, line); slices.Contains(r.Args, "--early") || r.UID != 65534 {
		t.Fatalf("changed identity: relay %v as uid %d, want an ordinary relay as nobody", r.Args, r.UID)
	}
	if pids = earlyPids(sv); len(pids) != before+1 {
		t.Fatalf("changed identity: %d early relays, want %d", len(pids), before+1)
	}
	eventually(t, "the unfit early relay gone", func() bool { return gone(pids[len(pids)-1]) })
	if id, _ := sv.s.granted.get("unix", "nobody"); id.uid != 65534 {
		t.Errorf("granted identity not updated: %+v", id)
	}
	c3.Close()
}

func TestGrantedIDsBounded(t *testing.T) {
	g := grantedIDs{max: 3}
	for i := range 10 {
		g.put("tcp", strconv.Itoa(i), grantedID{uid: 1000 + i, gid: 1000})
	}
	if len(g.m) != 3 {
		t.Fatalf("%d entries, want at most 3", len(g.m))
	}
	if id, ok := g.get("tcp", "9"); !ok || id.uid != 1009 {
		t.Errorf("the last put: %+v %v", id, ok)
	}
	if _, ok := g.get("unix", "9"); ok {
		t.Error("another transport's entry found")
	}
}
