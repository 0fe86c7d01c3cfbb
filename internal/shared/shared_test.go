// SPDX-License-Identifier: GPL-2.0-or-later

package shared

import (
	"strings"
	"testing"
)

// A pattern that matches no capture is reported: under CI as a failure.
func TestTraceSeedsMissing(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			if _, err := find(); err != nil && ci == "" {
				t.Skip(err.Error())
			}
			rec := &recorder{TB: t}
			seeds := TraceSeeds(rec, "no-such-capture-*.bin")
			if len(seeds) != 0 {
				t.Fatalf("%d seeds from a pattern that matches nothing", len(seeds))
			}
			switch {
			case ci == "true" && !rec.failed:
				t.Fatal("a missing seed did not fail under CI")
			case ci == "" && (rec.failed || !strings.Contains(rec.logged, "no capture matches")):
				t.Fatalf("a missing seed outside CI: failed %v, logged %q", rec.failed, rec.logged)
			}
		})
	}
}

// The real captures are found and read.
func TestTraceSeeds(t *testing.T) {
	Dir(t) // skips where ../shared is missing, fails under CI
	seeds := TraceSeeds(t, "a1-version-direct.1.c2s.bin", "b*.c2s.bin")
	if len(seeds) != 4 || len(seeds[0]) != 1200 {
		t.Fatalf("got %d seeds, want the a1 capture of 1200 bytes and three b captures", len(seeds))
	}
}

// recorder notes a failure instead of stopping the test, to check what
// TraceSeeds does with a missing capture.
type recorder struct {
	testing.TB
	failed bool
	logged string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.failed = true }
func (r *recorder) Logf(format string, args ...any)   { r.logged += format }
