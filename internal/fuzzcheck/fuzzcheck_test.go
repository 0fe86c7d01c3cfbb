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
