// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"container/heap"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Fairness before authentication (issue 12). What a hostile hello costs
// is CPU: a pre-auth process's exec, start-up and sandbox, then reading
// and refusing the hello. Two hundred of them at once from twenty
// sources, all at the normal priority and started in arrival order,
// share the CPU with the one real client's pre-auth process (and, on the
// same machine, the client), and that client waited for the whole flood
// (5-6 s on two cores). So a source's first unauthenticated connection
// gets its pre-auth process started before any source's further ones
// (launcher, below) and at the normal priority, and every further one
// while that is in flight runs at nice 19. A new source is then not
// behind a flood from other sources, and the flood still runs as fast
// as an otherwise idle machine allows; a source's own further
// connections wait behind other sources'. The spare (started ahead, at
// the normal priority) is kept for sources without a connection in
// flight.

// normalPerSource is how many unauthenticated connections of one source
// (block, or local uid) run at the normal priority.
const normalPerSource = 1

// busyHold is how long a busy source's pre-auth process holds its
// launcher slot at most: about three times the CPU a refused hostile
// hello costs. Many never speak to the supervisor: one refused waits
// for its client to close (up to 1 s), a browser's keep-alive HTTP
// connection serves files. So busy starts run at a rate of at least
// slots per busyHold (40 a second on two cores, about what their CPU
// allows), and a source's next connection waits this long at most for
// one of its own.
const busyHold = 100 * time.Millisecond

// busyNice is the nice value of a busy source's pre-auth process: the
// lowest priority, a weight of 15 against the 1024 of a process at nice
// 0. (SCHED_IDLE, a weight of 3, did no better in the measurement and can
// only be set thread by thread, which needs the child's /proc/PID/task,
// hidden from the supervisor under ProtectProc=invisible.)
const busyNice = 19

// lowerPriority sets every thread of pre-auth process pid to busyNice.
// Each child is a process group of its own (Setsid), and setpriority on
// a process group reaches every thread of it at once, under the kernel's
// task list lock: a thread cloned meanwhile copies the new value. The
// process is another user's: this needs CAP_SYS_NICE.
func lowerPriority(pid int) error {
	if err := unix.Setpriority(unix.PRIO_PGRP, pid, busyNice); err != nil {
		return fmt.Errorf("nice %d for pre-auth process %d: %w", busyNice, pid, err)
	}
	return nil
}

// normalPriority puts every thread of process pid back at nice 0: a
// busy source's pre-auth process that has become an authenticated
// connection's TLS/WebSocket transport.
func normalPriority(pid int) error {
	if err := unix.Setpriority(unix.PRIO_PGRP, pid, 0); err != nil {
		return fmt.Errorf("nice 0 for transport process %d: %w", pid, err)
	}
	return nil
}

// launcher starts pre-auth processes one at a time, the lowest rank
// first (a source's first unauthenticated connection, and spares, rank
// 1; its further ones 2, 3, ...), in arrival order within a rank. Go
// starts processes one at a time anyway (the fork lock; each start waits
// until the child has exec'd), so without this a new source's start
// queued behind a flood's two hundred, each slow on a loaded machine.
//
// And a busy source's process (rank over normalPerSource) holds one of
// slots until it has said something to the supervisor or ended (the
// caller's release), or hold has passed: its start-up and first packet
// are what cost CPU. So at most slots of them compete for the CPU at
// once, however many wait: 180 at nice 19 weighed 2700 against a real
// client's 1024; four weigh 60. A rank-1 start never waits for a slot.
type launcher struct {
	slots int
	hold  time.Duration

	mu      sync.Mutex
	waiting launchQueue
	seq     uint64
	busy    int           // slots held
	wake    chan struct{} // holds one token: something to start, or a slot freed
}

type launchReq struct {
	rank  int
	seq   uint64
	start func()
	done  chan struct{}
}

func newLauncher(slots int, hold time.Duration) *launcher {
	l := &launcher{slots: slots, hold: hold, wake: make(chan struct{}, 1)}
	go l.serve()
	return l
}

// run has start run in its turn and waits for it. release gives back the
// slot of a busy source's process (a no-op for rank 1, and after hold in
// any case); it may be called more than once.
func (l *launcher) run(rank int, start func()) (release func()) {
	r := &launchReq{rank: rank, start: start, done: make(chan struct{})}
	l.mu.Lock()
	l.seq++
	r.seq = l.seq
	heap.Push(&l.waiting, r)
	l.mu.Unlock()
	l.signal()
	<-r.done
	if rank <= normalPerSource {
		return func() {}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			l.mu.Lock()
			l.busy--
			l.mu.Unlock()
			l.signal()
		})
	}
	time.AfterFunc(l.hold, release)
	return release
}

func (l *launcher) signal() {
	select {
	case l.wake <- struct{}{}:
	default: // a token is there already
	}
}

func (l *launcher) serve() {
	for range l.wake {
		for {
			l.mu.Lock()
			if l.waiting.Len() == 0 || l.waiting[0].rank > normalPerSource && l.busy >= l.slots {
				l.mu.Unlock()
				break // until a start comes or a slot is freed
			}
			r := heap.Pop(&l.waiting).(*launchReq)
			if r.rank > normalPerSource {
				l.busy++
			}
			l.mu.Unlock()
			r.start()
			close(r.done)
		}
	}
}

// launchQueue is a heap of requests by rank, then arrival.
type launchQueue []*launchReq

func (q launchQueue) Len() int { return len(q) }
func (q launchQueue) Less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].seq < q[j].seq
}
func (q launchQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *launchQueue) Push(x any)   { *q = append(*q, x.(*launchReq)) }
func (q *launchQueue) Pop() any {
	old := *q
	r := old[len(old)-1]
	*q = old[:len(old)-1]
	return r
}
