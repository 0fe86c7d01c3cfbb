// SPDX-License-Identifier: GPL-2.0-or-later

package child

import (
	"os/exec"
	"runtime"
	"sync"
)

// Start starts cmd from the one OS thread that starts every child of the
// process: a goroutine locked to it for the process's life.
//
// Linux sends a child's parent-death signal (Spec.Pdeathsig) when the
// thread that forked it ends, not the process (prctl(2), go.dev/issue/27505).
// The supervisor ends its idle threads after a load (package threadtrim),
// which may be any thread no goroutine is locked to: a pre-auth process
// forked from one of them would be SIGKILLed in the middle of a login.
// The locked thread is never ended. It also bounds the threads a burst of
// starts costs: fork (vfork) and the wait for the exec block the forking
// thread, and these now queue on one instead of each holding its own.
func Start(cmd *exec.Cmd) error {
	StartHere()
	done := make(chan error, 1)
	starter.jobs <- func() { done <- cmd.Start() }
	return <-done
}

var starter struct {
	once sync.Once
	jobs chan func()
}

// StartHere starts the child starter's thread now (it starts with the
// first Start otherwise), so that the thread, and the Go runtime's
// template thread its lock starts, are counted in a baseline taken after
// start-up.
func StartHere() {
	starter.once.Do(func() {
		starter.jobs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for job := range starter.jobs {
				job()
			}
		}()
	})
}
