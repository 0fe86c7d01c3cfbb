// SPDX-License-Identifier: GPL-2.0-or-later

// Package crashhook lets the e2e tests make a pre-auth process or a relay
// panic on purpose, to prove that a crash of ours fails them
// (internal/logscan) and that the supervisor survives it. It is compiled
// in only with the build tag crashtest, which no shipped build uses
// (scripts/build-bin.sh, debian/rules and the spec pass no tags; the
// e2e test checks the programs it is given carry no such tag); without
// the tag Check does nothing.
package crashhook

// Tag is the build tag that turns the hook on.
const Tag = "crashtest"

// PreauthUser is the username whose hello makes a crashtest pre-auth
// process panic.
const PreauthUser = "crashtest-panic"

// RelayDisplay is the display whose request makes a crashtest relay
// panic.
const RelayDisplay = ":59997"
