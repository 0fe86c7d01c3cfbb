// SPDX-License-Identifier: GPL-2.0-or-later

package client_test

import "syscall"

var stopSignal, contSignal = syscall.SIGSTOP, syscall.SIGCONT
