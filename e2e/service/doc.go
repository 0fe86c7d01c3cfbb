// SPDX-License-Identifier: GPL-2.0-or-later

// Package service holds the end-to-end tests of the packaged service in the
// systemd testbed (build tag testbed; scripts/testbed-tests.sh runs them):
// the .deb installed, socket activation, system passwords through PAM,
// sessions started on demand as logind sessions, a restart under load, and
// the processes' credentials read back from /proc.
package service
