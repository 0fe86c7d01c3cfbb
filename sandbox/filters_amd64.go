// SPDX-License-Identifier: GPL-2.0-or-later

package sandbox

import seccomp "github.com/elastic/go-seccomp-bpf"

// archSetFS is ARCH_SET_FS (asm/prctl.h), which x/sys/unix does not name.
const archSetFS = 0x1002

func archRules() []Rule {
	return []Rule{
		{Name: "arch_prctl", Args: []seccomp.Condition{eq(0, archSetFS)}, Why: "amd64: a new runtime thread sets its thread-local storage (ARCH_SET_FS only)"},
	}
}
