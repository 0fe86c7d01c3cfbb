// SPDX-License-Identifier: GPL-2.0-or-later

package version

import "testing"

// TestFor: each dialect gets its own release.
func TestFor(t *testing.T) {
	for _, tc := range []struct {
		rencodePlus bool
		want        string
	}{{false, "3.1.3"}, {true, "6.5.3"}} {
		if got := For(tc.rencodePlus); got != tc.want {
			t.Errorf("For(%v) = %q, want %q", tc.rencodePlus, got, tc.want)
		}
	}
}
