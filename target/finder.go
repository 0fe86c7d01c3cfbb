// SPDX-License-Identifier: GPL-2.0-or-later

package target

import (
	"log/slog"
	"os"
	"syscall"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/sockdir"
)

// Finder is what one connection's user may reach, seen as that user from
// the relay worker: the sessions in the user's socket directories (or the
// module's list), and, through the supervisor, a new one.
type Finder struct {
	Launch launch.Launch
	Log    *slog.Logger

	// Sessions is the channel to ask the supervisor for a new session
	// (ondemand.go), nil when the proxy starts none; StartMode is its
	// start-session setting (StartOnRequest or StartAuto).
	Sessions  *ipc.Conn
	StartMode string
}

// Request is the one-shot request of a hello, "" for a UI client.
func Request(h caps.Hello) string {
	if h.Request != "" {
		return h.Request
	}
	for _, r := range []string{"info", "id", "connect_test", "version", "screenshot", "event", "print", "exit", "stop", "detach"} {
		if h.Bool(r+"_request", false) {
			return r
		}
	}
	return ""
}

// SocketDirs are the user's socket directories: the module's, expanded,
// or xpra's defaults.
func (f Finder) SocketDirs() []string {
	if len(f.Launch.SocketDirs) > 0 {
		return sockdir.Expand(f.Launch.SocketDirs, f.Launch.UID, f.Launch.Username, f.Launch.Home)
	}
	return sockdir.Dirs(f.Launch.UID, f.Launch.Home)
}

// Displays are the sessions the user may reach: the module's list, or the
// user's live local sessions ("username matters").
func (f Finder) Displays() []string {
	if f.Launch.Displays != nil {
		return f.Launch.Displays
	}
	sessions, err := sockdir.List(f.SocketDirs(), sockdir.Hostname())
	if err != nil {
		f.Log.Warn("listing sessions", "err", err)
	}
	var out []string
	for _, se := range sessions {
		if se.State == sockdir.Live && f.OwnSocket(se.Path) {
			out = append(out, se.Display)
		}
	}
	return out
}

// OwnSocket reports whether the user owns a socket found by scanning: a
// shared directory (/run/xpra) may hold other users' sessions that the
// user's groups let it open, which are not its sessions.
func (f Finder) OwnSocket(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == f.Launch.UID
}
