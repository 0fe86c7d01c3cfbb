// SPDX-License-Identifier: GPL-2.0-or-later

package limits

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// Impose merges a penalty from another proxy with the block's own record:
// the larger failure count and the later end win, and a local failure
// after it counts on from the merged count.
func TestImpose(t *testing.T) {
	src, other := addr("203.0.113.9"), addr("203.0.113.10")
	block := netip.MustParsePrefix("203.0.113.9/32")
	type step struct {
		do       string // "fail" (local), "impose", "clear"
		failures int    // impose: the count carried
		left     time.Duration
		want     bool // impose: applied
	}
	tests := []struct {
		name      string
		block     netip.Prefix
		steps     []step
		wantLeft  time.Duration // src's penalty left after the steps, 0: admitted
		wantFails int           // src's count after one more local failure
	}{
		{"a penalty heard bars the block", block, []step{{"impose", 3, 4 * time.Second, true}}, 4 * time.Second, 4},
		{"what the block has already changes nothing", block, []step{
			{"fail", 0, 0, false}, {"fail", 0, 0, false}, {"fail", 0, 0, false}, // 3 failures, 4s
			{"impose", 1, time.Second, false}, {"impose", 3, 4 * time.Second, false},
		}, 4 * time.Second, 4},
		{"a larger count with an earlier end keeps the end", block, []step{
			{"fail", 0, 0, false}, {"fail", 0, 0, false}, // 2 failures, 2s
			{"impose", 4, time.Second, true},
		}, 2 * time.Second, 5},
		{"a longer one heard extends it", block, []step{
			{"fail", 0, 0, false}, {"impose", 5, 16 * time.Second, true},
		}, 16 * time.Second, 6},
		{"an ended one is not applied", block, []step{{"impose", 2, 0, false}}, 0, 1},
		{"another block size is not applied", netip.MustParsePrefix("203.0.113.0/24"),
			[]step{{"impose", 2, 2 * time.Second, false}}, 0, 1},
		{"a success elsewhere clears it", block, []step{
			{"impose", 4, 8 * time.Second, true}, {"clear", 0, 0, false},
		}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			l := newLimiter(t, Defaults(), c, nil)
			for _, s := range tt.steps {
				switch s.do {
				case "fail":
					l.Failed(src)
				case "impose":
					if got := l.Impose(tt.block, s.failures, c.now().Add(s.left)); got != s.want {
						t.Fatalf("Impose(%s, %d, +%s) = %v, want %v", tt.block, s.failures, s.left, got, s.want)
					}
				case "clear":
					l.Clear(block)
				}
			}
			err := l.Check(src)
			var r *Refusal
			switch {
			case tt.wantLeft == 0 && err != nil:
				t.Fatalf("src refused: %v", err)
			case tt.wantLeft != 0 && (!errors.As(err, &r) || r.Until.Sub(c.now()) != tt.wantLeft):
				t.Fatalf("src: %v, want a penalty of %s left", err, tt.wantLeft)
			}
			if err := l.Check(other); err != nil {
				t.Fatalf("another source refused: %v", err)
			}
			if _, n := l.Failed(src); n != tt.wantFails {
				t.Fatalf("a local failure after: count %d, want %d", n, tt.wantFails)
			}
		})
	}
}

func TestImposePenaltiesOff(t *testing.T) {
	cfg := Defaults()
	cfg.PenaltyMin, cfg.PenaltyMax = 0, 0
	c := newClock()
	l := newLimiter(t, cfg, c, nil)
	if l.Impose(netip.MustParsePrefix("192.0.2.1/32"), 3, c.now().Add(time.Minute)) {
		t.Fatal("applied with penalties off")
	}
	if d := l.PenaltyFor(3); d != 0 {
		t.Fatalf("PenaltyFor with penalties off: %s", d)
	}
}
