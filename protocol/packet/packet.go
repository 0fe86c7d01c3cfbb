// SPDX-License-Identifier: GPL-2.0-or-later

// Package packet names xpra packets: the packet types a proxy handles, the
// disconnect reasons clients show, 3.1's integer aliases for packet types
// and 6.x's renamed packets (PROTOCOL.md §6).
package packet

import (
	"fmt"

	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// Packet types a proxy reads or writes itself. Everything else is relayed.
const (
	Hello           = "hello"
	Challenge       = "challenge"
	Disconnect      = "disconnect"
	Ping            = "ping"
	PingEcho        = "ping_echo"
	InfoRequest     = "info-request"
	InfoResponse    = "info-response"
	SetDeflate      = "set_deflate"
	StartupComplete = "startup-complete"
	ShutdownServer  = "shutdown-server"
	Draw            = "draw"
	SSLUpgrade      = "ssl-upgrade"
)

// Disconnect reasons (3.1 xpra/util.py, 6.x ConnectionMessage). Clients show
// them to the user, so a proxy must use the same words.
const (
	ReasonClientPingTimeout = "client ping timeout"
	ReasonLoginTimeout      = "login timeout"
	ReasonClientExitTimeout = "client exit timeout"
	ReasonProtocolError     = "protocol error"
	ReasonVersionError      = "version error"
	ReasonControlCommand    = "control command error"
	ReasonAuthError         = "authentication error"
	ReasonAuthFailed        = "authentication failed"
	ReasonPermissionError   = "permission error"
	ReasonServerError       = "server error"
	ReasonSessionNotFound   = "session not found error"
	ReasonDone              = "done"
	ReasonServerExit        = "server exit"
	ReasonServerUpgrade     = "server upgrade"
	ReasonServerShutdown    = "server shutdown"
	ReasonClientRequest     = "client request"
	ReasonDetachRequest     = "detach request"
	ReasonNewClient         = "new client"
	ReasonIdleTimeout       = "idle timeout"
	ReasonSessionBusy       = "session busy"
	ReasonClientExit        = "client exit"
	ReasonConnectionError   = "connection error"
)

// NewDisconnect builds ["disconnect", reason, details...].
func NewDisconnect(reason string, details ...string) []any {
	p := make([]any, 0, 2+len(details))
	p = append(p, Disconnect, reason)
	for _, d := range details {
		p = append(p, d)
	}
	return p
}

// DisconnectReason returns the reason and details of a disconnect packet.
func DisconnectReason(p []any) (reason string, details []string) {
	for i, v := range p[min(1, len(p)):] {
		s, ok := value.AsString(v)
		if !ok {
			s = fmt.Sprint(v)
		}
		if i == 0 {
			reason = s
		} else {
			details = append(details, s)
		}
	}
	return reason, details
}

// legacyNames maps 6.x's new packet names to the names 3.1 uses, which 6.x
// still sends and accepts by default (xpra/net/packet_type.py).
var legacyNames = map[string]string{
	"window-create":              "new-window",
	"window-raise":               "raise-window",
	"window-restack":             "restack-window",
	"window-initiate-moveresize": "initiate-moveresize",
	"window-destroy":             "lost-window",
	"window-draw":                "draw",
	"window-eos":                 "eos",
	"window-map":                 "map-window",
	"window-unmap":               "unmap-window",
	"window-close":               "close-window",
	"window-focus":               "focus",
	"window-refresh":             "buffer-refresh",
	"window-draw-ack":            "damage-sequence",
	"window-bell":                "bell",
	"keyboard-sync":              "set-keyboard-sync-enabled",
	"pointer-motion":             "pointer",
	"pointer-wheel":              "wheel-motion",
	"pointer-devices":            "input-devices",
	"logging-event":              "logging",
	"printer-devices":            "printers",
	"printer-file":               "print-file",
	"file-send":                  "send-file",
	"file-ack-chunk":             "ack-file-chunk",
	"file-send-chunk":            "send-file-chunk",
	"file-data-request":          "send-data-request",
	"file-data-response":         "send-data-response",
	"cursor-set":                 "set-cursors",
	"command-start":              "start-command",
	"display-configure":          "configure-display",
	"display-ungrab":             "force-ungrab",
	"display-resized":            "desktop_size",
	"display-request-screenshot": "screenshot",
	"display-screenshot":         "screenshot",
	"display-show-desktop":       "show-desktop",
	"notification-show":          "notify_show",
	"notification-close":         "notify_close",
	"notification-status":        "set-notify",
	"bell-set":                   "set-bell",
	"sharing-lock":               "lock-toggle",
	"connection-close":           "disconnect",
	"ping-echo":                  "ping_echo",
	"audio-data":                 "sound-data",
}

// Canonical returns the legacy name of a renamed 6.x packet type (the form
// both 3.1 and 6.x accept), or name itself.
func Canonical(name string) string {
	if legacy, ok := legacyNames[name]; ok {
		return legacy
	}
	return name
}
