// SPDX-License-Identifier: GPL-2.0-or-later

// Package testenv lets integration tests ask for the real peers they need
// (xpra, Debian's python modules, root). Where one is missing the test is
// skipped with a message saying what to install; under CI (CI=true), which
// installs everything, a missing peer is a failure instead, so nothing is
// silently skipped there.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Missing skips (or, under CI, fails) the test because of what.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI must provide it: see .ci/install-deps.sh)", what)
	}
	t.Skipf("skipped: %s (bash .ci/install-deps.sh installs it)", what)
}

// SystemPython is Debian's interpreter, which sees the python3-* packages
// (a pyenv or venv python earlier in PATH would not).
const SystemPython = "/usr/bin/python3"

// PythonModules returns the system python after checking it can import mods.
func PythonModules(t testing.TB, mods ...string) string {
	t.Helper()
	for _, m := range mods {
		if err := exec.Command(SystemPython, "-c", "import "+m).Run(); err != nil {
			Missing(t, "python module "+m+" for "+SystemPython)
		}
	}
	return SystemPython
}

// Root requires uid 0.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root privileges")
	}
}

// Command returns the path of a program, requiring it.
func Command(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/bin/", "/usr/sbin/"} {
			if _, err := os.Stat(dir + name); err == nil {
				return dir + name
			}
		}
		Missing(t, "program "+name)
	}
	return p
}
