// SPDX-License-Identifier: GPL-2.0-or-later

package threadtrim

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// grow makes the runtime start threads: n goroutines blocked at once in
// a system call (as the supervisor's fork/execs are under a burst).
func grow(t *testing.T, n int) int {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			ts := unix.NsecToTimespec(int64(300 * time.Millisecond))
			unix.Nanosleep(&ts, nil)
		})
	}
	wg.Wait()
	c, err := Count()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTrimBackToBase(t *testing.T) {
	// The runtime's first LockOSThread starts its template thread, one
	// for the process's life (the supervisor's child starter locks its
	// thread at start-up, before the baseline is taken): not a thread of
	// a load.
	runtime.LockOSThread()
	runtime.UnlockOSThread()
	base, err := Count()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{4, 16, 40} {
		grown := grow(t, n)
		if grown <= base {
			t.Fatalf("%d goroutines in a blocking call left %d threads, base %d: the test proves nothing", n, grown, base)
		}
		// Run trims on every idle pass; a pass may end short of base when
		// the runtime starts a thread meanwhile (on a loaded machine, sysmon
		// hands a P stuck in a system call to a new one). Three passes, as
		// Run would make over 15 s, must reach it.
		ended, now, passes := 0, 0, 0
		for passes < 3 && (passes == 0 || now > base) {
			e, err := Trim(base)
			if err != nil {
				t.Fatal(err)
			}
			ended += e
			passes++
			now, _ = Count()
		}
		t.Logf("%d blocked goroutines: %d threads → %d ended in %d passes → %d (base %d)", n, grown, ended, passes, now, base)
		if now > base {
			t.Errorf("after %d passes of Trim(%d): %d threads", passes, base, now)
		}
	}
}

// A goroutine locked to its thread keeps it (the supervisor's child
// starter), and the main thread is never ended.
func TestTrimSparesLockedAndMain(t *testing.T) {
	tid := make(chan int)
	stop := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		<-stop
		tid <- unix.Gettid()
	}()
	locked := <-tid
	grow(t, 16)
	// Down to 1 is more than can be ended: Trim stops where the rest are
	// busy or not its to end.
	if _, err := Trim(1); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if again := <-tid; again != locked {
		t.Errorf("the locked goroutine moved from thread %d to %d", locked, again)
	}
	for _, id := range []int{locked, os.Getpid()} {
		if _, err := os.Stat("/proc/self/task/" + itoa(id)); err != nil {
			t.Errorf("thread %d was ended: %v", id, err)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
