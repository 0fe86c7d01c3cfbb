// SPDX-License-Identifier: GPL-2.0-or-later

package memlimit

import (
	"errors"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// helperEnv makes the test binary act as a child that applies a limit and
// then allocates $MEMLIMIT_ALLOC bytes and touches them.
const helperEnv = "MEMLIMIT_TEST_HELPER"

var sink [][]byte

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helper())
	}
	os.Exit(m.Run())
}

func helper() int {
	data, err := Apply(Limits{Heap: 1 << 30, GoLimit: 1 << 30})
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	os.Stdout.WriteString("data=" + strconv.FormatUint(data, 10) + " golimit=" + strconv.FormatInt(debug.SetMemoryLimit(-1), 10) + "\n")
	n, _ := strconv.Atoi(os.Getenv("MEMLIMIT_ALLOC"))
	// Live chunks of 1 MiB, all kept: the collector cannot help.
	for i := 0; i < n>>20; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = 1
		}
		sink = append(sink, b)
	}
	return 0
}

// A child that applies a ceiling and then needs more dies the way the
// supervisor recognises (exit status 2, "out of memory"); one that stays
// under it runs normally; GOMEMLIMIT from the environment wins over the
// default.
func TestCeiling(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		alloc    int
		wantCode int
		wantOut  string
	}{
		{"under the ceiling", Limits{Heap: 64 << 20, GoLimit: 32 << 20}.Env(), 32 << 20, 0, " golimit=33554432"},
		{"over the ceiling", Limits{Heap: 64 << 20, GoLimit: 24 << 20}.Env(), 256 << 20, 2, "out of memory"},
		{"default golimit without GOMEMLIMIT", []string{EnvHeap + "=134217728"}, 0, 0, "golimit=1073741824"},
		{"a bad size refuses to run", []string{EnvHeap + "=lots"}, 0, 1, "not a size in bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append([]string{helperEnv + "=1", "MEMLIMIT_ALLOC=" + strconv.Itoa(tc.alloc), "PATH=/usr/bin:/bin"}, tc.env...)
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode || !strings.Contains(string(out), tc.wantOut) {
				t.Fatalf("exit %d, want %d; output (want %q):\n%.2000s", code, tc.wantCode, tc.wantOut, out)
			}
		})
	}
}

// Apply never raises a hard limit a parent set lower.
func TestApplyKeepsLowerHardLimit(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "ulimit -d 98304 && exec \"$0\" -test.run=^$", os.Args[0])
	cmd.Env = append([]string{helperEnv + "=1", "PATH=/usr/bin:/bin"}, Limits{Heap: 1 << 30, GoLimit: 32 << 20}.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if !strings.Contains(string(out), "data="+strconv.Itoa(96<<20)+" ") {
		t.Fatalf("a 96 MiB hard limit from the parent was not kept:\n%s", out)
	}
}
