// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/deptest"
)

// The root PAM helper does one job: libpam, the request and reply, passwd
// lookups. Nothing that speaks xpra, the network or D-Bus belongs in a
// root process that holds a password.
func TestDeps(t *testing.T) {
	const mod = "github.com/xpra-proxy/xpra-proxy/"
	const parser = "no xpra parser in a root process that holds a password"
	const other = "another process's code"
	rules := []deptest.Rule{
		{Pkg: mod + "protocol/", Reason: parser},
		{Pkg: mod + "handover", Reason: parser},
		{Pkg: mod + "probe", Reason: parser},
		{Pkg: mod + "control", Reason: parser},
		{Pkg: mod + "ipc", Reason: "the helper speaks its own request and reply on stdin/stdout, not the workers' ipc"},
		{Pkg: mod + "supervisor", Reason: other},
		{Pkg: mod + "preauth", Reason: other},
		{Pkg: mod + "worker", Reason: other},
		{Pkg: mod + "relay", Reason: other},
		{Pkg: mod + "reencode", Reason: other},
		{Pkg: mod + "target", Reason: other},
		{Pkg: mod + "encode", Reason: other},
		{Pkg: "github.com/godbus/", Reason: "no D-Bus in the PAM helper"},
		{Pkg: "github.com/coreos/", Reason: "no systemd in the PAM helper"},
		{Pkg: "modernc.org/sqlite", Reason: "auth databases are the supervisor's"},
		{Pkg: "crypto/tls", Reason: "the helper has no network"},
		{Pkg: "net/http", Reason: "the helper has no network"},
	}
	deptest.Check(t, "./cmd/xpra-proxy-pam", rules)
}
