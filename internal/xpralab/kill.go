// SPDX-License-Identifier: GPL-2.0-or-later

package xpralab

import "syscall"

func syscallKill(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }
