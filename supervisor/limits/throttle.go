// SPDX-License-Identifier: GPL-2.0-or-later

package limits

import (
	"sync"
	"time"
)

// Throttle bounds how often something is logged: at most Burst events per
// Interval pass, the rest are counted and reported with the first event
// that passes afterwards. A flood of refused connections must not flood
// the journal as well.
type Throttle struct {
	Interval time.Duration
	Burst    int
	now      func() time.Time

	mu         sync.Mutex
	start      time.Time // of the current interval
	passed     int       // events passed in it
	suppressed int       // events held back since the last one passed
}

// NewThrottle lets burst events through per interval; now is the clock
// (nil: time.Now).
func NewThrottle(interval time.Duration, burst int, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{Interval: interval, Burst: burst, now: now}
}

// Allow reports whether this event may be logged and, if so, how many were
// held back before it.
func (t *Throttle) Allow() (ok bool, suppressed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := t.now(); now.Sub(t.start) >= t.Interval {
		t.start, t.passed = now, 0
	}
	if t.passed >= t.Burst {
		t.suppressed++
		return false, 0
	}
	t.passed++
	suppressed, t.suppressed = t.suppressed, 0
	return true, suppressed
}
