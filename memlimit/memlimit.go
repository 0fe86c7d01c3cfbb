// SPDX-License-Identifier: GPL-2.0-or-later

// Package memlimit gives a process that reads unauthenticated bytes a
// hard memory ceiling of its own, so that a parser bug or an input the
// decoding budgets missed costs one process, not the machine.
//
// Two limits, for two jobs:
//
//   - RLIMIT_DATA, the hard ceiling, set relative to what the process
//     maps at start-up (Limits.Heap). Go's heap, stacks included, is
//     anonymous private writable memory, which Linux (4.7 and later)
//     counts against RLIMIT_DATA; the runtime's address-space
//     reservations are PROT_NONE until used, so they do not count (which
//     is why RLIMIT_AS, that counts them, is not usable with Go). Over the
//     limit mmap fails and the runtime dies with "fatal error: out of
//     memory", exit status 2, which the supervisor counts as a failed
//     login for the source. Soft and hard limit alike: an unprivileged
//     process can lower its hard limit but never raise it again.
//   - GOMEMLIMIT, the soft one: the collector works harder as the heap
//     nears it, so real traffic stays well below the hard ceiling.
//
// The supervisor passes both in the child's environment (Env); the child
// calls Apply first thing in main, before it reads a byte from a client.
package memlimit

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits is a process kind's memory ceiling.
type Limits struct {
	// Heap is how much more anonymous writable memory than it maps at
	// start-up the process may map: RLIMIT_DATA is set to its VmData at
	// Apply plus Heap. Relative, because what a Go binary maps before it
	// does anything is large, fixed and mostly never touched (Go 1.26's
	// pre-auth binary: 32 MiB of BSS for the FIPS DRBG, 32 MiB for the
	// heap arena index, the first 4 MiB arena: ~75 MB of VmData for 6 MB
	// of RSS), and differs between builds.
	Heap    uint64
	GoLimit int64 // GOMEMLIMIT, bytes
}

// Preauth is the ceiling of a pre-auth process, which becomes the
// transport process of a TLS or WebSocket connection. Measured
// (SECURITY.md, "Pre-auth memory"): a hostile hello refused by its
// decoding budget (4 MiB for a 1 MiB packet limit) and a TLS+WebSocket
// transport carrying a real session each map under 16 MiB beyond
// start-up. 64 MiB leaves room for the collector's slack and bursts;
// GOMEMLIMIT 24 MiB keeps the heap well below it.
var Preauth = Limits{Heap: 64 << 20, GoLimit: 24 << 20}

// Control is the ceiling of the :proxy control process: it reads small
// bounded requests, so the pre-auth ceiling is ample.
var Control = Preauth

// LDAP is the ceiling of the LDAP helper: one bind and at most two small
// searches, each reply bounded by the directory's answer sizes it asks for.
var LDAP = Preauth

// Directory is the ceiling of the directory helper: a pool of a few
// connections and replies bounded at 4 MiB (pgdir.MaxReply).
var Directory = Preauth

// Environment variables of the child contract.
const (
	// EnvHeap carries Limits.Heap, in bytes.
	EnvHeap = "XPRA_PROXY_DATA_HEADROOM"
	// EnvGo is read by the Go runtime at start-up.
	EnvGo = "GOMEMLIMIT"
)

// Env returns the environment entries that give a child these limits.
func (l Limits) Env() []string {
	return []string{
		fmt.Sprintf("%s=%d", EnvHeap, l.Heap),
		fmt.Sprintf("%s=%d", EnvGo, l.GoLimit),
	}
}

// Apply sets this process's ceiling: RLIMIT_DATA to its VmData now plus
// $XPRA_PROXY_DATA_HEADROOM (else def.Heap), never above a hard limit a
// parent set; and, when the runtime did not get GOMEMLIMIT from the
// environment, def.GoLimit. It returns the RLIMIT_DATA set.
func Apply(def Limits) (uint64, error) {
	heap := def.Heap
	if s := os.Getenv(EnvHeap); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("memlimit: $%s=%q is not a size in bytes", EnvHeap, s)
		}
		heap = n
	}
	base, err := vmData()
	if err != nil {
		return 0, err
	}
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_DATA, &cur); err != nil {
		return 0, fmt.Errorf("memlimit: reading RLIMIT_DATA: %w", err)
	}
	// Never raise what a parent (systemd's LimitDATA=) already lowered.
	data := min(base+heap, cur.Max)
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: data, Max: data}); err != nil {
		return 0, fmt.Errorf("memlimit: setting RLIMIT_DATA to %d: %w", data, err)
	}
	if os.Getenv(EnvGo) == "" && def.GoLimit > 0 {
		debug.SetMemoryLimit(def.GoLimit)
	}
	return data, nil
}

// vmData is what RLIMIT_DATA counts of this process now, in bytes.
func vmData() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("memlimit: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmData:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("memlimit: VmData %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("memlimit: no VmData in /proc/self/status")
}
