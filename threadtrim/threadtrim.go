// SPDX-License-Identifier: GPL-2.0-or-later

// Package threadtrim gives a long-running process's idle OS threads back
// to the system after a load.
//
// The Go runtime starts an OS thread for every goroutine that blocks in a
// system call while others want to run, and it never ends an idle one:
// the supervisor keeps the peak of a burst's concurrent blocking calls
// (fork/exec waits for the child's exec; reads of /proc and of files) for
// the rest of its life. The runtime's one documented way to end a thread
// is a goroutine that calls runtime.LockOSThread and exits without
// unlocking: "the thread will be terminated". Trim does that, one thread
// at a time, down to a baseline, when the process is idle.
//
// Which thread ends is whichever idle one the scheduler gives the
// goroutine: never one locked to another goroutine (the runtime runs
// nothing else on it), never the main thread (ending the thread group's
// leader is not possible; the runtime would wedge it instead, so Trim
// steps off it). A thread that holds state of its own which something
// still needs must therefore be locked by the goroutine that needs it:
// in the supervisor, the thread that forks children with a parent-death
// signal (Linux sends it when the forking thread ends, not the process;
// package child starts every child from one locked thread for that).
package threadtrim

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Count is the number of the process's OS threads (/proc/self/status).
func Count() (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("threadtrim: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, fmt.Errorf("threadtrim: Threads %q: %w", v, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("threadtrim: no Threads line in /proc/self/status")
}

// EndOne ends one idle OS thread of the process, not the main one, and
// says whether it did (false: the goroutine found no thread it may end).
func EndOne() bool {
	return endOne(true)
}

func endOne(mayRetry bool) bool {
	done := make(chan bool, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			done <- true
			return // locked: the runtime ends this thread
		}
		// The main thread: ask again from here, so that the scheduler
		// cannot give the next goroutine this thread (it is locked to us).
		ended := mayRetry && endOne(false)
		runtime.UnlockOSThread()
		done <- ended
	}()
	return <-done
}

// Trim ends idle threads until the process has at most base, or until
// ending threads stops lowering the count (the others are busy in system
// calls, or the runtime starts others in their place), and returns how
// many it ended.
func Trim(base int) (int, error) {
	n, err := Count()
	if err != nil {
		return 0, err
	}
	ended, misses := 0, 0
	// A miss is tolerated a few times in a row: the runtime's first
	// thread start from a locked thread also starts its template thread
	// (one for the process's life), which offsets the first end.
	for n > base && misses < 3 {
		if !EndOne() {
			misses++
			continue
		}
		ended++
		// The thread's exit completes just after the goroutine's end
		// (later on a loaded machine: up to 0.5 s before it counts as a
		// miss).
		before := n
		for range 500 {
			if n, err = Count(); err != nil {
				return ended, err
			}
			if n < before {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if n < before {
			misses = 0
		} else {
			misses++
		}
	}
	return ended, nil
}

// Options are Run's settings.
type Options struct {
	// Base is the thread count to trim down to (e.g. Count after
	// start-up).
	Base int
	// Every is how often Run looks (0: 5 s).
	Every time.Duration
	// Busy says whether the process has work in flight, in which case
	// Run leaves its threads alone (nil: never busy). Threads are only
	// ended once the load is over: under load they are soon needed
	// again.
	Busy func() bool
	Log  *slog.Logger
}

// Run trims the process's threads to o.Base every o.Every while it is not
// busy, until ctx ends.
func Run(ctx context.Context, o Options) {
	every := o.Every
	if every <= 0 {
		every = 5 * time.Second
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if o.Busy != nil && o.Busy() {
			continue
		}
		ended, err := Trim(o.Base)
		if err != nil && !failed {
			failed = true // once: /proc does not come back by itself
			log.Warn("idle threads are not given back", "err", err)
		}
		if ended > 0 {
			log.Debug("idle threads ended", "count", ended, "base", o.Base)
		}
	}
}
