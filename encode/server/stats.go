// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"sync/atomic"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
)

// Counters are the worker's figures for monitoring (encproto Stats):
// frames by backend and result, contexts the pool refused, frames being
// encoded now. One Counters shared by both front ends (this package's
// socket and encode/xpraenc's) counts the worker as a whole. Atomics
// only: counting costs a frame nothing measurable.
type Counters struct {
	start        time.Time
	frames       [encproto.NumBackends][encproto.NumResults]atomic.Uint64
	opensRefused atomic.Uint64
	inFlight     atomic.Int64
}

// NewCounters starts counting now.
func NewCounters() *Counters { return &Counters{start: time.Now()} }

// Frame counts one frame's end: its context's backend (0 when it had
// none) and its result (encproto.FrameOK, FrameFailed, FrameRejected).
func (c *Counters) Frame(b encproto.Backend, result int) {
	if int(b) >= encproto.NumBackends {
		b = 0
	}
	c.frames[b][result].Add(1)
}

// OpenRefused counts a context the pool refused.
func (c *Counters) OpenRefused() { c.opensRefused.Add(1) }

// Begin counts a frame in flight until the returned func is called.
func (c *Counters) Begin() (end func()) {
	c.inFlight.Add(1)
	return func() { c.inFlight.Add(-1) }
}

// Stats is the counters now, with the figures read elsewhere.
func (c *Counters) Stats(conns, contexts int) encproto.StatsReply {
	r := encproto.StatsReply{Start: uint64(c.start.Unix()), Conns: clamp32(conns), Contexts: clamp32(contexts),
		InFlight: clamp32(int(c.inFlight.Load())), OpensRefused: c.opensRefused.Load()}
	for i := range c.frames {
		for j := range c.frames[i] {
			r.Frames[i][j] = c.frames[i][j].Load()
		}
	}
	return r
}

func clamp32(n int) uint32 { return uint32(max(0, min(n, 1<<32-1))) }

// frameResult is how a Compress reply counts.
func frameResult(rep encproto.Reply) int {
	e, ok := rep.(*encproto.Error)
	switch {
	case !ok:
		return encproto.FrameOK
	case e.Code == encproto.EncodeFailed:
		return encproto.FrameFailed
	}
	return encproto.FrameRejected
}
