// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/deptest"
)

// A relay worker runs per connection, as the session's owner: it carries
// what relaying needs and nothing of the other processes. It does link
// net/http and crypto/tls, which it never uses: two libraries it needs
// import them (ARCHITECTURE.md, "What each binary links").
func TestDeps(t *testing.T) {
	const mod = "github.com/xpra-proxy/xpra-proxy/"
	const encoder = "the relay only talks to the shared encoder (encode/client)"
	rules := []deptest.Rule{
		{Pkg: "net/http", Reason: "a relay serves and fetches no HTTP",
			Via: map[string]string{
				"github.com/andybalholm/brotli": "its http.go (an HTTP response compressor); the relay needs its decoder for brotli packets",
				"github.com/gobwas/ws":          "its HTTP upgrader and dialer types; the relay needs its frame code and its Dialer.Upgrade for ws:// targets",
			}},
		{Pkg: "crypto/tls", Reason: "a relay terminates no TLS: the pre-auth process does, and ssl:// targets are not dialled",
			Via: map[string]string{
				"github.com/gobwas/ws": "its Dialer's wss:// support, which we never use (ws:// only, on our own connection)",
				"net/http":             "linked by brotli and gobwas/ws, above",
				"net/http/httptrace":   "part of net/http",
			}},
		{Pkg: mod + "preauth", Reason: "the pre-auth stage is a binary of its own (xpra-proxy-preauth)"},
		{Pkg: mod + "sandbox", Reason: "confinement belongs to the processes that read unauthenticated bytes (xpra-proxy-preauth, xpra-proxy-control); its seccomp tables cost about 1 ms and 165 KB at every start"},
		{Pkg: "github.com/elastic/go-seccomp-bpf", Reason: "as sandbox: a relay installs no filter"},
		{Pkg: mod + "supervisor", Reason: "root's code"},
		{Pkg: mod + "pamauth", Reason: "PAM is root's (xpra-proxy-pam)"},
		{Pkg: "github.com/msteinert/pam", Reason: "PAM is root's (xpra-proxy-pam)"},
		{Pkg: "modernc.org/sqlite", Reason: "auth databases are read by the supervisor"},
		{Pkg: "github.com/godbus/dbus", Reason: "logind and systemd are the supervisor's"},
		{Pkg: "github.com/coreos/go-systemd", Reason: "logind and systemd are the supervisor's"},
		{Pkg: "github.com/NVIDIA/go-nvml", Reason: "the GPU is the encoder's"},
		{Pkg: mod + "encode/server", Reason: encoder},
		{Pkg: mod + "encode/pool", Reason: encoder},
		{Pkg: mod + "encode/nvenc", Reason: encoder},
		{Pkg: mod + "encode/x264", Reason: encoder},
		{Pkg: mod + "encode/jpeg", Reason: encoder},
		{Pkg: mod + "encode/xpraenc", Reason: encoder},
		{Pkg: mod + "encode/listen", Reason: encoder},
	}
	deptest.Check(t, "./cmd/xpra-proxy-worker", rules)
}
