// SPDX-License-Identifier: GPL-2.0-or-later

package child

import (
	"io"
	"os/exec"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWaitHoldsNoThread: waiting for many children at once does not make
// a thread per child, and every wait returns the child's status.
func TestWaitHoldsNoThread(t *testing.T) {
	const n = 200
	threads := func() int { return pprof.Lookup("threadcreate").Count() }
	var cmds []*exec.Cmd
	var stdins []io.WriteCloser
	for range n {
		cmd := exec.Command("/bin/sh", "-c", "read x; exit 3")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, stdins = append(cmds, cmd), append(stdins, stdin)
	}
	t.Cleanup(func() {
		for _, s := range stdins {
			s.Close()
		}
	})
	before := threads()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Go(func() { errs[i] = Wait(cmd) })
	}
	time.Sleep(500 * time.Millisecond) // every waiter parked
	if made := threads() - before; made > 20 {
		t.Fatalf("%d threads made while %d children are waited for", made, n)
	}
	for _, s := range stdins {
		s.Close()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Fatalf("child %d: %v, want exit status 3", i, err)
		}
	}
}

// The fallback (and what a plain cmd.Wait does) does make threads: the
// check above can fail.
func TestBlockingWaitMakesThreads(t *testing.T) {
	const n = 100
	threads := func() int { return pprof.Lookup("threadcreate").Count() }
	var stdins []io.WriteCloser
	var wg sync.WaitGroup
	before := threads()
	for range n {
		cmd := exec.Command("/bin/sh", "-c", "read x")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stdins = append(stdins, stdin)
		wg.Go(func() { waitNoReap(cmd.Process.Pid); cmd.Wait() })
	}
	time.Sleep(500 * time.Millisecond)
	made := threads() - before
	for _, s := range stdins {
		s.Close()
	}
	wg.Wait()
	if made <= 20 {
		t.Fatalf("blocking waits for %d children made only %d threads: the thread count does not show them", n, made)
	}
}
