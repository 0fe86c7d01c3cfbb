// SPDX-License-Identifier: GPL-2.0-or-later

// Package fuzzcheck holds checks shared by the fuzz targets of the parsers
// of network input.
package fuzzcheck

import (
	"runtime"
	"testing"
)

// allocated is the bytes allocated since the program started, exact to
// the object: ReadMemStats stops the world and flushes every P's cache
// of small-object spans first. runtime/metrics' /gc/heap/allocs:bytes
// counts a span's small objects only when the span leaves its cache, so
// a 4 KiB allocation, or ten of 512 bytes, could count as 0 and an
// item-count blow-up made of many small values slip under a limit
// (issue 18).
func allocated() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// Bounded runs fn and fails t if it allocated more than limit bytes in
// total. The total bounds every single allocation, so a fuzz target using
// it shows that no input makes the parser allocate more than the packet
// limit it was configured with. The counter is process-wide: fuzz workers
// run inputs one at a time, but the fuzzing engine's own goroutines
// sometimes allocate meanwhile (a CI run once saw 194 kB for an input that
// allocates a few hundred bytes). So a run over the limit is repeated, and
// t fails only if the second run is over too: a parser's allocations
// follow from its input, the engine's noise does not repeat. fn must not
// depend on having run before.
func Bounded(t *testing.T, limit uint64, fn func()) {
	t.Helper()
	got := measure(fn)
	if got <= limit {
		return
	}
	if again := measure(fn); again > limit {
		t.Fatalf("allocated %d bytes, then %d on a second run, more than the %d-byte limit", got, again, limit)
	}
}

func measure(fn func()) uint64 {
	before := allocated()
	fn()
	return allocated() - before
}
