// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/deptest"
)

// The directory helper does one job: PostgreSQL for the supervisor. It
// holds the database's password, so nothing that speaks xpra or belongs
// to another process is linked in.
func TestDeps(t *testing.T) {
	const mod = "github.com/xpra-proxy/xpra-proxy/"
	const parser = "no xpra parser in a process that holds a password"
	const other = "another process's code"
	rules := []deptest.Rule{
		{Pkg: mod + "protocol/", Reason: parser},
		{Pkg: mod + "handover", Reason: parser},
		{Pkg: mod + "probe", Reason: parser},
		{Pkg: mod + "control", Reason: parser},
		{Pkg: mod + "ipc", Reason: "the helper speaks pgdir's protocol, not the workers' ipc"},
		{Pkg: mod + "supervisor", Reason: other},
		{Pkg: mod + "preauth", Reason: other},
		{Pkg: mod + "worker", Reason: other},
		{Pkg: mod + "relay", Reason: other},
		{Pkg: mod + "reencode", Reason: other},
		{Pkg: mod + "target", Reason: other},
		{Pkg: mod + "encode", Reason: other},
		{Pkg: mod + "pamauth", Reason: other},
		{Pkg: mod + "ldapauth", Reason: other},
		{Pkg: "github.com/msteinert/pam", Reason: "no libpam in the directory helper"},
		{Pkg: "github.com/godbus/", Reason: "no D-Bus in the directory helper"},
		{Pkg: "github.com/coreos/", Reason: "no systemd in the directory helper"},
		{Pkg: "github.com/go-ldap/", Reason: "no LDAP in the directory helper"},
		{Pkg: "modernc.org/sqlite", Reason: "auth databases are the supervisor's"},
		{Pkg: "net/http", Reason: "the helper serves and fetches nothing over HTTP"},
	}
	deptest.Check(t, "./cmd/xpra-proxy-directory", rules)
}
