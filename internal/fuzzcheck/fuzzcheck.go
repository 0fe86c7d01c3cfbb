// Package fuzzcheck holds checks shared by the fuzz targets of the parsers
// of network input.
package fuzzcheck

import (
	"runtime/metrics"
	"testing"
)

var sample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

func allocated() uint64 {
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// Bounded runs fn and fails t if it allocated more than limit bytes in
// total. The total bounds every single allocation, so a fuzz target using
// it shows that no input makes the parser allocate more than the packet
// limit it was configured with. Fuzz workers run inputs one at a time, so
// the process-wide counter measures fn alone (plus runtime noise far below
// any limit used here).
func Bounded(t *testing.T, limit uint64, fn func()) {
	t.Helper()
	before := allocated()
	fn()
	if got := allocated() - before; got > limit {
		t.Fatalf("allocated %d bytes, more than the %d-byte limit", got, limit)
	}
}
