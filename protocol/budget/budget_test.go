// SPDX-License-Identifier: GPL-2.0-or-later

package budget

import (
	"errors"
	"testing"
)

func TestMeter(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		run  func(m *Meter) error
		what string // "" for no refusal
	}{
		{"bytes within", Limits{Bytes: 100}, func(m *Meter) error { return m.Alloc(100) }, ""},
		{"bytes over", Limits{Bytes: 100}, func(m *Meter) error { _ = m.Alloc(60); return m.Alloc(41) }, "bytes"},
		{"items over", Limits{Items: 2}, func(m *Meter) error { _ = m.Item(0); _ = m.Item(0); return m.Item(0) }, "items"},
		{"item bytes over", Limits{Bytes: 10}, func(m *Meter) error { return m.Item(11) }, "bytes"},
		{"grow charges the whole array", Limits{Bytes: 100}, func(m *Meter) error { return m.Grow(7, 16) }, "bytes"},
		{"grow overflow", Limits{}, func(m *Meter) error { return m.Grow(1<<62, 16) }, "bytes"},
		{"depth at limit", Limits{Depth: 3}, func(m *Meter) error { return m.Deeper(3, 128) }, ""},
		{"depth over", Limits{Depth: 3}, func(m *Meter) error { return m.Deeper(4, 128) }, "depth"},
		{"ceiling below limit", Limits{Depth: 300}, func(m *Meter) error { return m.Deeper(129, 128) }, "depth"},
		{"no limits", Limits{}, func(m *Meter) error { _ = m.Item(1 << 40); return m.Alloc(1 << 40) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(New(tc.lim))
			var ex *ExceededError
			switch {
			case tc.what == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.what != "" && (!errors.As(err, &ex) || ex.What != tc.what || !errors.Is(err, ErrExceeded)):
				t.Fatalf("got %v, want a %s refusal", err, tc.what)
			}
		})
	}
}

// A nil meter charges nothing but keeps the caller's nesting ceiling.
func TestNilMeter(t *testing.T) {
	var m *Meter
	if err := m.Alloc(1 << 40); err != nil {
		t.Fatal(err)
	}
	if err := m.Item(1 << 40); err != nil {
		t.Fatal(err)
	}
	if err := m.Deeper(129, 128); !errors.Is(err, ErrExceeded) {
		t.Fatalf("depth 129 with a ceiling of 128: %v", err)
	}
}

// Budgets grow with the packet limit and stay within a few times it.
func TestForPacket(t *testing.T) {
	for _, n := range []int{64 << 10, 1 << 20, 16 << 20} {
		l := ForPacket(n)
		if l.Bytes != 4*int64(n) || l.Items < int64(n)/32 || l.Depth != preauthDepth {
			t.Errorf("ForPacket(%d) = %+v", n, l)
		}
	}
	if l := ForPacket(0); l != (Limits{}) {
		t.Errorf("ForPacket(0) = %+v, want no limits", l)
	}
}
