// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// waitQueued waits until n starts wait in the launcher.
func waitQueued(t *testing.T, l *launcher, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		got := l.waiting.Len()
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d starts waiting, want %d", got, n)
		}
	}
}

// The launcher starts the lowest rank first, in arrival order within a
// rank: a new source's connection (rank 1) that arrives behind a flood's
// (ranks 2 and up) starts next.
func TestLauncherOrder(t *testing.T) {
	l := newLauncher(100, time.Hour)
	release := make(chan struct{})
	holding := make(chan struct{})
	go l.run(9, func() { close(holding); <-release }) // a start under way
	<-holding
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	reqs := []struct {
		name string
		rank int
	}{
		{"flood a#3", 3}, {"flood b#2", 2}, {"flood a#4", 4}, {"flood c#2", 2},
		{"new source", 1}, {"spare", 1}, {"flood b#3", 3},
	}
	for i, r := range reqs {
		wg.Go(func() {
			l.run(r.rank, func() {
				mu.Lock()
				order = append(order, r.name)
				mu.Unlock()
			})
		})
		waitQueued(t, l, i+1) // arrival order is the order of reqs
	}
	close(release)
	wg.Wait()
	want := []string{"new source", "spare", "flood b#2", "flood c#2", "flood a#3", "flood b#3", "flood a#4"}
	if !slices.Equal(order, want) {
		t.Errorf("started %q,\nwant %q", order, want)
	}
}

// A busy source's process holds a slot until released (or hold passes):
// with the slots taken, further busy starts wait, and rank 1 does not.
func TestLauncherSlots(t *testing.T) {
	l := newLauncher(2, time.Hour)
	var mu sync.Mutex
	var started []string
	start := func(name string) func() {
		return func() { mu.Lock(); started = append(started, name); mu.Unlock() }
	}
	startedNow := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(started) }
	r1 := l.run(2, start("busy 1"))
	l.run(3, start("busy 2"))
	third := make(chan func())
	go func() { third <- l.run(2, start("busy 3")) }()
	waitQueued(t, l, 1) // the third waits for a slot
	l.run(1, start("new source"))
	time.Sleep(50 * time.Millisecond)
	if got, want := startedNow(), []string{"busy 1", "busy 2", "new source"}; !slices.Equal(got, want) {
		t.Fatalf("with both slots held: started %q, want %q", got, want)
	}
	r1()
	r1() // twice frees one slot
	rel3 := <-third
	if got := startedNow(); len(got) != 4 || got[3] != "busy 3" {
		t.Fatalf("after a release: started %q", got)
	}
	rel3()
	// A slot is given back after hold at the latest.
	short := newLauncher(1, 100*time.Millisecond)
	short.run(2, func() {})
	begin := time.Now()
	short.run(2, func() {})
	if waited := time.Since(begin); waited < 80*time.Millisecond || waited > 5*time.Second {
		t.Errorf("the second busy start waited %v, want about the 100 ms hold", waited)
	}
}

// niceOf returns the nice value of every thread of pid, from
// /proc/PID/task/TID/stat (field 19).
func niceOf(t *testing.T, pid int) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, e.Name()))
		if err != nil {
			continue // the thread ended
		}
		_, rest, _ := strings.Cut(string(b), ") ")
		if f := strings.Fields(rest); len(f) > 16 {
			out[e.Name()] = f[16]
		}
	}
	return out
}

// lowerPriority sets every thread of a running multi-threaded child (a
// process group of its own, as every child of the supervisor) to nice
// busyNice, including threads it starts afterwards, and normalPriority back to
// 0 (which needs CAP_SYS_NICE, as the supervisor has).
func TestPriority(t *testing.T) {
	if os.Getenv("XPRA_PROXY_TEST_THREADS") == "1" {
		// The child: threads now, and more when stdin is closed.
		var wg sync.WaitGroup
		block := func() { runtime.LockOSThread(); time.Sleep(30 * time.Second) }
		for range 3 {
			wg.Go(block)
		}
		_, _ = io.Copy(io.Discard, os.Stdin)
		for range 3 {
			wg.Go(block)
		}
		wg.Wait()
		os.Exit(0)
	}
	testenv.Root(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPriority$")
	cmd.Env = append(os.Environ(), "XPRA_PROXY_TEST_THREADS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	more, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	settled := func(n int) map[string]string {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if nice := niceOf(t, pid); len(nice) >= n || time.Now().After(deadline) {
				return nice
			}
		}
	}
	check := func(step string, nice map[string]string, want string) {
		t.Helper()
		for tid, n := range nice {
			if n != want {
				t.Errorf("%s: thread %s at nice %s, want %s", step, tid, n, want)
			}
		}
	}
	before := settled(4)
	if err := lowerPriority(pid); err != nil {
		t.Fatal(err)
	}
	check("lowered", niceOf(t, pid), fmt.Sprint(busyNice))
	more.Close() // three more locked threads
	check("threads started after", settled(len(before)+3), fmt.Sprint(busyNice))
	if err := normalPriority(pid); err != nil {
		t.Fatal(err)
	}
	check("back to normal", niceOf(t, pid), "0")
}
