// SPDX-License-Identifier: GPL-2.0-or-later

// Package version holds the versions the proxy reports: its own, and the
// xpra version it answers a client with, which depends on the client's
// dialect. It is a leaf so that every process (pre-auth, relay, control)
// can say them without importing another's code.
package version

const (
	// Proxy is what the proxy reports as its own version in proxy.* keys.
	Proxy = "0.1"
	// Protocol is the xpra version the proxy speaks to clients of the
	// rencode/bencode dialect (xpra 3.1 to 4.2), and to anyone whose
	// dialect it does not know yet (its :proxy control socket).
	Protocol = "3.1.3"
	// Protocol6 is the xpra version the proxy speaks to rencodeplus
	// clients (xpra 4.3 and later): the newest release whose real client
	// and server its tests run (e2e/TestRealPeers, internal/xpra6lab).
	Protocol6 = "6.5.3"
)

// For is the xpra version a client is told in `version` and `info`
// answers: the release of its own dialect that the proxy speaks, as
// xpra's own proxy answers with its own release. A 6.x client told
// "3.1.3" would take the proxy for a server it cannot talk to; a 3.1
// client told "6.5.3" likewise. rencodePlus is whether the client's
// packets are rencodeplus.
func For(rencodePlus bool) string {
	if rencodePlus {
		return Protocol6
	}
	return Protocol
}
