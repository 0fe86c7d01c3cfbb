// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/deptest"
)

// The metrics process reads HTTP requests from the network: it links
// client_golang, the sandbox and the counters' snapshot type, nothing of
// the other processes.
func TestDeps(t *testing.T) {
	const mod = "github.com/xpra-proxy/xpra-proxy/"
	const other = "another process's code: a compromise of the metrics process must not find it here"
	rules := []deptest.Rule{
		{Pkg: mod + "supervisor", Reason: other},
		{Pkg: mod + "preauth", Reason: other},
		{Pkg: mod + "worker", Reason: other},
		{Pkg: mod + "relay", Reason: other},
		{Pkg: mod + "reencode", Reason: other},
		{Pkg: mod + "target", Reason: other},
		{Pkg: mod + "control", Reason: other},
		{Pkg: mod + "protocol", Reason: "it parses no xpra packet"},
		// Of the encoder, only its protocol (encproto, and codec, the
		// enum types it names): to ask for the counters.
		{Pkg: mod + "encode/server", Reason: "the metrics process handles no video"},
		{Pkg: mod + "encode/client", Reason: "the metrics process handles no video"},
		{Pkg: mod + "encode/pool", Reason: "the metrics process handles no video"},
		{Pkg: mod + "encode/listen", Reason: "the metrics process handles no video"},
		{Pkg: mod + "encode/xpraenc", Reason: "the metrics process handles no video"},
		{Pkg: mod + "encode/x264", Reason: "the metrics process handles no video"},
		{Pkg: mod + "encode/nvenc", Reason: "the metrics process handles no video"},
		{Pkg: mod + "encode/jpeg", Reason: "the metrics process handles no video"},
		{Pkg: mod + "encode/internal", Reason: "the metrics process handles no video"},
		{Pkg: mod + "encode/bench", Reason: "the metrics process handles no video"},
		{Pkg: mod + "pamauth", Reason: "PAM is root's (xpra-proxy-pam)"},
		{Pkg: "github.com/msteinert/pam", Reason: "PAM is root's (xpra-proxy-pam)"},
		{Pkg: "modernc.org/sqlite", Reason: "auth databases are read by the supervisor"},
		{Pkg: "github.com/godbus/dbus", Reason: "logind and systemd are the supervisor's"},
		{Pkg: "github.com/coreos/go-systemd", Reason: "logind and systemd are the supervisor's"},
		{Pkg: "github.com/NVIDIA/go-nvml", Reason: "the GPU is the encoder's"},
	}
	deptest.Check(t, "./cmd/xpra-proxy-metrics", rules)
}
