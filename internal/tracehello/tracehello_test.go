// SPDX-License-Identifier: GPL-2.0-or-later

package tracehello

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/shared"
)

// Every capture yields its hellos, among them the real 3.1.3 client's
// attach hello with its 215 keys (traces/README.md).
func TestHellos(t *testing.T) {
	shared.Dir(t)
	hs := Hellos(t)
	attach := false
	for _, h := range hs {
		attach = attach || len(h) == 215
	}
	if len(hs) < 8 || !attach {
		t.Fatalf("%d hellos, attach hello found: %v; want at least 8 and the attach hello", len(hs), attach)
	}
}
