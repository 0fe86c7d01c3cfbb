// SPDX-License-Identifier: GPL-2.0-or-later

// Package timeline records when a connection's setup reached each of its
// stages, for one debug line per connection (issue 17: where the setup's
// milliseconds go). The supervisor keeps one for accept to the relay's
// start; the relay, told the accept time, one for its own stages, so the
// two lines line up on the same origin. A nil *Timeline records nothing:
// callers make one only when the line would be logged, so the hot path
// pays a nil check per stage.
package timeline

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Timeline is the stages reached since an origin (the accept).
type Timeline struct {
	origin time.Time
	mu     sync.Mutex // stages: marked from more than one goroutine (an early relay's exec)
	stages []stage
}

type stage struct {
	name string
	at   time.Duration
}

// New starts a timeline at origin when log would write a debug record,
// else returns nil.
func New(log *slog.Logger, origin time.Time) *Timeline {
	if log == nil || !log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	return At(origin)
}

// At starts a timeline at origin whatever the log level (the relay, whose
// level is not the supervisor's, is told by a flag).
func At(origin time.Time) *Timeline {
	return &Timeline{origin: origin, stages: make([]stage, 0, 12)}
}

// Origin is the timeline's start; zero for a nil timeline.
func (t *Timeline) Origin() time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.origin
}

// Mark records that the setup reached the stage now. A stage marked twice
// keeps both (the log shows a repeat, such as a spare replaced).
func (t *Timeline) Mark(name string) {
	if t == nil {
		return
	}
	at := time.Since(t.origin)
	t.mu.Lock()
	t.stages = append(t.stages, stage{name, at})
	t.mu.Unlock()
}

// MarkAt records that the setup reached the stage at t (a stage passed
// before the timeline could be made).
func (t *Timeline) MarkAt(name string, at time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.stages = append(t.stages, stage{name, at.Sub(t.origin)})
	t.mu.Unlock()
}

// Attrs is the stages as log attributes, each its offset from the origin
// in milliseconds to 0.1 ms, in the order reached.
func (t *Timeline) Attrs() []any {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]any, 0, 2*len(t.stages))
	for _, s := range t.stages {
		out = append(out, s.name, math.Round(float64(s.at)/float64(time.Millisecond)*10)/10)
	}
	return out
}

// Log writes the one line of the timeline at level, with extra attributes
// first (e.g. the worker's pid, to join the supervisor's line and the
// relay's).
func (t *Timeline) Log(log *slog.Logger, level slog.Level, msg string, extra ...any) {
	if t == nil {
		return
	}
	log.Log(context.Background(), level, msg, append(extra, t.Attrs()...)...)
}
