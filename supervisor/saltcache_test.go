// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"runtime"
	"strconv"
	"testing"
)

func TestSaltCache(t *testing.T) {
	tests := []struct {
		name string
		max  int
		adds []string
		want []bool
	}{
		{"a new salt is accepted", 4, []string{"a"}, []bool{true}},
		{"a salt seen before is refused", 4, []string{"a", "b", "a"}, []bool{true, true, false}},
		{"refused again, still remembered", 4, []string{"a", "a", "a"}, []bool{true, false, false}},
		{"salts sharing a prefix differ", 4, []string{"salt-1", "salt-10", "salt-1"}, []bool{true, true, false}},
		{"full: the oldest is forgotten, the others kept", 2, []string{"a", "b", "c", "b", "a"}, []bool{true, true, true, false, true}},
		{"the ring wraps more than once", 2, []string{"a", "b", "c", "d", "e", "d", "e", "c"}, []bool{true, true, true, true, true, false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newSaltCache(tt.max)
			for i, s := range tt.adds {
				if got := c.add(s); got != tt.want[i] {
					t.Fatalf("add #%d (%q) = %v, want %v", i, s, got, tt.want[i])
				}
			}
			if len(c.seen) > tt.max || len(c.ring) > tt.max {
				t.Errorf("%d digests in the map, %d in the ring, max %d", len(c.seen), len(c.ring), tt.max)
			}
		})
	}
}

// TestSaltCacheFull fills the supervisor's cache past its size: it stays
// at its size, and the heap it holds is logged (BENCHMARKS.md).
func TestSaltCacheFull(t *testing.T) {
	const max = 1 << 16
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c := newSaltCache(max)
	for i := range 2 * max {
		// As long as a combined salt (64 bytes).
		if !c.add(strconv.Itoa(i) + string(make([]byte, 64-len(strconv.Itoa(i))))) {
			t.Fatalf("salt %d refused", i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(c.seen) != max || len(c.ring) != max {
		t.Fatalf("%d digests in the map, %d in the ring, want %d", len(c.seen), len(c.ring), max)
	}
	if c.add(strconv.Itoa(2*max-1) + string(make([]byte, 64-len(strconv.Itoa(2*max-1))))) {
		t.Error("the newest salt was forgotten")
	}
	t.Logf("%d salts remembered: heap +%.2f MB", max, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/1e6)
	runtime.KeepAlive(c)
}
