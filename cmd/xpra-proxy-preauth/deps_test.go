// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/deptest"
)

// The pre-auth process reads every unauthenticated byte: it links the
// transports and the xpra parsers it needs, and nothing that holds a
// secret, touches the GPU or belongs to another process.
func TestDeps(t *testing.T) {
	const mod = "github.com/xpra-proxy/xpra-proxy/"
	const other = "another process's code: a pre-auth compromise must not find it here"
	rules := []deptest.Rule{
		{Pkg: "github.com/NVIDIA/go-nvml", Reason: "the GPU is the encoder's"},
		{Pkg: mod + "encode", Reason: "the pre-auth stage handles no video"},
		{Pkg: "github.com/msteinert/pam", Reason: "PAM runs in xpra-proxy-pam, as root; pre-auth only relays the challenge"},
		{Pkg: mod + "pamauth", Reason: "PAM runs in xpra-proxy-pam, as root; pre-auth only relays the challenge"},
		{Pkg: "modernc.org/sqlite", Reason: "auth databases (secrets) are read by the supervisor only"},
		{Pkg: mod + "supervisor", Reason: other},
		{Pkg: mod + "worker", Reason: other},
		{Pkg: mod + "relay", Reason: other},
		{Pkg: mod + "reencode", Reason: other},
		{Pkg: mod + "target", Reason: other},
		{Pkg: mod + "control", Reason: other},
		{Pkg: "github.com/godbus/dbus", Reason: "logind and systemd are the supervisor's"},
		{Pkg: "github.com/coreos/go-systemd", Reason: "logind and systemd are the supervisor's"},
	}
	deptest.Check(t, "./cmd/xpra-proxy-preauth", rules)
}
