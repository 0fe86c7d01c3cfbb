// SPDX-License-Identifier: GPL-2.0-or-later

package fuzzcheck

import "testing"

var sink []byte

// The counter sees a large allocation, so Bounded cannot pass vacuously.
func TestCounterSeesAllocations(t *testing.T) {
	before := allocated()
	sink = make([]byte, 8<<20)
	if got := allocated() - before; got < 8<<20 {
		t.Fatalf("an 8 MiB allocation counted as %d bytes", got)
	}
	Bounded(t, 1<<20, func() { sink = make([]byte, 1000) })
}

var small [][]byte

// Small allocations count as they happen, not when their span is
// replaced: one of 4 KiB, ten of 512 bytes, a thousand of 16 bytes.
func TestCounterSeesSmallAllocations(t *testing.T) {
	for _, tc := range []struct{ n, size int }{{1, 4096}, {10, 512}, {1000, 16}} {
		before := allocated()
		small = make([][]byte, 0, tc.n)
		for range tc.n {
			small = append(small, make([]byte, tc.size))
		}
		if got := allocated() - before; got < uint64(tc.n*tc.size) {
			t.Errorf("%d allocations of %d bytes counted as %d bytes", tc.n, tc.size, got)
		}
	}
}
