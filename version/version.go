// Package version holds the two versions the proxy reports: its own, and
// the xpra protocol version it speaks to clients. It is a leaf so that
// every process (pre-auth, relay, control) can say them without importing
// another's code.
package version

const (
	// Proxy is what the proxy reports as its own version in proxy.* keys.
	Proxy = "0.1"
	// Protocol is the xpra version the proxy speaks to clients.
	Protocol = "3.1.3"
)
