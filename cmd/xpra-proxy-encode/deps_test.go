// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/deptest"
)

// The shared encoder serves relays (and xpra servers) on unix sockets: it
// links the codecs and the GPU, and nothing of the other processes. It
// does link net/http and crypto/tls, which it never uses: brotli imports
// them (ARCHITECTURE.md, "What each binary links").
func TestDeps(t *testing.T) {
	const mod = "github.com/xpra-proxy/xpra-proxy/"
	const other = "another process's code"
	rules := []deptest.Rule{
		{Pkg: "net/http", Reason: "the encoder serves no HTTP",
			Via: map[string]string{"github.com/andybalholm/brotli": "its http.go (an HTTP response compressor); xpraenc needs its decoder for brotli packets"}},
		{Pkg: "crypto/tls", Reason: "the encoder speaks TLS to no one",
			Via: map[string]string{
				"net/http":           "linked by brotli, above",
				"net/http/httptrace": "part of net/http",
			}},
		{Pkg: "github.com/gobwas/ws", Reason: "the encoder's sockets are unix sockets: no WebSocket"},
		{Pkg: mod + "protocol/websocket", Reason: "the encoder's sockets are unix sockets: no WebSocket"},
		{Pkg: mod + "supervisor", Reason: other},
		{Pkg: mod + "preauth", Reason: other},
		{Pkg: mod + "worker", Reason: other},
		{Pkg: mod + "relay", Reason: other},
		{Pkg: mod + "reencode", Reason: other},
		{Pkg: mod + "target", Reason: other},
		{Pkg: mod + "control", Reason: other},
		{Pkg: mod + "pamauth", Reason: "PAM is root's"},
		{Pkg: "github.com/msteinert/pam", Reason: "PAM is root's"},
		{Pkg: "modernc.org/sqlite", Reason: "auth databases are the supervisor's"},
		{Pkg: "github.com/godbus/dbus", Reason: "logind and systemd are the supervisor's"},
	}
	deptest.Check(t, "./cmd/xpra-proxy-encode", rules)
}
