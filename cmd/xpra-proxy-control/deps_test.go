// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/deptest"
)

// The control process reads requests on the supervisor's :proxy socket:
// it links the xpra control protocol and its sandbox, nothing of the
// other processes.
func TestDeps(t *testing.T) {
	const mod = "github.com/xpra-proxy/xpra-proxy/"
	const other = "another process's code: a compromise of the control process must not find it here"
	rules := []deptest.Rule{
		{Pkg: mod + "supervisor", Reason: other},
		{Pkg: mod + "preauth", Reason: other},
		{Pkg: mod + "worker", Reason: other},
		{Pkg: mod + "relay", Reason: other, Via: map[string]string{
			mod + "control/proxyctl": "it also holds each relay's own control socket, which reports the relay's figures; this process calls only ServeSupervisor (splitting proxyctl would drop it)"}},
		{Pkg: mod + "reencode", Reason: other, Via: map[string]string{
			mod + "control/proxyctl": "as relay, above"}},
		{Pkg: mod + "target", Reason: other},
		{Pkg: mod + "encode/server", Reason: "the control process handles no video"},
		{Pkg: mod + "encode/pool", Reason: "the control process handles no video"},
		{Pkg: mod + "encode/nvenc", Reason: "the control process handles no video"},
		{Pkg: mod + "encode/x264", Reason: "the control process handles no video"},
		{Pkg: mod + "pamauth", Reason: "PAM is root's (xpra-proxy-pam)"},
		{Pkg: "github.com/msteinert/pam", Reason: "PAM is root's (xpra-proxy-pam)"},
		{Pkg: "modernc.org/sqlite", Reason: "auth databases are read by the supervisor"},
		{Pkg: "github.com/godbus/dbus", Reason: "logind and systemd are the supervisor's"},
		{Pkg: "github.com/coreos/go-systemd", Reason: "logind and systemd are the supervisor's"},
		{Pkg: "github.com/NVIDIA/go-nvml", Reason: "the GPU is the encoder's"},
	}
	deptest.Check(t, "./cmd/xpra-proxy-control", rules)
}
