// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import "testing"

func TestLeastLoaded(t *testing.T) {
	hosts := []string{"a", "b", "c"}
	tests := []struct {
		load map[string]int64
		want string
	}{
		{map[string]int64{}, "a"},
		{map[string]int64{"a": 1}, "b"},
		{map[string]int64{"a": 1, "b": 1}, "c"},
		{map[string]int64{"a": 1, "b": 1, "c": 1}, "a"},
		{map[string]int64{"a": 3, "b": 2, "c": 2}, "b"},
		{map[string]int64{"x": 0, "a": 1}, "b"}, // a host not configured is not a choice
	}
	for _, tt := range tests {
		if got := LeastLoaded(hosts, tt.load); got != tt.want {
			t.Errorf("LeastLoaded(%v) = %s, want %s", tt.load, got, tt.want)
		}
	}
}
