// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

func TestDirectoryStatus(t *testing.T) {
	since := time.Date(2026, 12, 7, 19, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		st        pgdir.Status
		fallbacks uint64
		want      []string
	}{
		{"up", pgdir.Status{Up: true, Since: since}, 0, []string{"shared directory up", "0 fallback logins"}},
		{"down", pgdir.Status{Since: since, Err: "connection refused"}, 4,
			[]string{"shared directory DOWN since 2026-12-07T19:00:00Z", "connection refused", "4 fallback logins"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := directoryStatus(tt.st, tt.fallbacks)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
		})
	}
}
