// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/deptest"
)

// The supervisor runs as root: it must not link anything that parses what
// clients or sessions send, nor the code of the unprivileged processes
// (ARCHITECTURE.md, "Where untrusted bytes are parsed").
func TestDeps(t *testing.T) {
	const mod = "github.com/xpra-proxy/xpra-proxy/"
	const parser = "root parses nothing a client or a session sends"
	var rules []deptest.Rule
	for _, p := range []string{"wire", "rencode", "bencode", "compress", "cipher", "conn", "caps", "packet",
		"challenge", "value", "websocket", "xpraurl"} {
		rules = append(rules, deptest.Rule{Pkg: mod + "protocol/" + p, Reason: parser})
	}
	rules = append(rules,
		deptest.Rule{Pkg: mod + "probe", Reason: parser},
		deptest.Rule{Pkg: mod + "handover", Reason: "the hand-over is the pre-auth process's to write and the relay's to read"},
		deptest.Rule{Pkg: mod + "preauth", Reason: "the pre-auth stage is xpra-proxy-preauth, unprivileged"},
		deptest.Rule{Pkg: mod + "worker", Reason: "the relay is xpra-proxy-worker, as the session's owner"},
		deptest.Rule{Pkg: mod + "relay", Reason: "the relay is xpra-proxy-worker, as the session's owner"},
		deptest.Rule{Pkg: mod + "reencode", Reason: "re-encoding runs in the relay"},
		deptest.Rule{Pkg: mod + "target", Reason: "the session is chosen in the relay, as the user"},
		deptest.Rule{Pkg: mod + "control", Reason: "control sockets are served by unprivileged processes"},
		deptest.Rule{Pkg: "github.com/pierrec/lz4", Reason: parser},
		deptest.Rule{Pkg: "github.com/andybalholm/brotli", Reason: parser},
		deptest.Rule{Pkg: "github.com/gobwas/ws", Reason: parser},
		deptest.Rule{Pkg: "github.com/NVIDIA/go-nvml", Reason: "the GPU is the encoder's (xpra-proxy-encode)"},
		deptest.Rule{Pkg: "github.com/msteinert/pam", Reason: "libpam runs in xpra-proxy-pam, one process per login"},
		deptest.Rule{Pkg: "github.com/go-ldap/", Reason: "LDAP runs in xpra-proxy-ldap, unprivileged, one process per login"},
		deptest.Rule{Pkg: "github.com/go-asn1-ber/", Reason: "root parses no BER: the directory's answers are the LDAP helper's"},
		deptest.Rule{Pkg: mod + "ldapauth/ldapcheck", Reason: "the LDAP client half is the helper's (root links only the exec side, ldapauth)"},
		deptest.Rule{Pkg: "crypto/tls", Reason: "TLS is terminated by the pre-auth process",
			Via: map[string]string{"github.com/coreos/go-systemd/v22/activation": "its TLSListeners, which we never call"}},
		deptest.Rule{Pkg: "net/http", Reason: "root serves no HTTP"},
		deptest.Rule{Pkg: "github.com/jackc/", Reason: "the directory's wire protocol is parsed by xpra-proxy-directory"},
		deptest.Rule{Pkg: mod + "pgdir/pgstore", Reason: "the PostgreSQL half of the directory is xpra-proxy-directory's (root links only the client, pgdir)"},
		deptest.Rule{Pkg: "compress/", Reason: "root decompresses nothing"},
	)
	deptest.Check(t, "./cmd/xpra-proxy", rules)
}
