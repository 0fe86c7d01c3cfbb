// SPDX-License-Identifier: GPL-2.0-or-later

//go:build !amd64

package sandbox

// archRules: other architectures set thread-local storage in clone.
func archRules() []Rule { return nil }
