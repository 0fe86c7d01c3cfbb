// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"fmt"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// The sd_notify(3) messages of xpra-proxy.service (Type=notify,
// NotifyAccess=main). Each is a no-op returning nil when $NOTIFY_SOCKET is
// unset, i.e. when not started by systemd. The variable is kept (not
// unset) so that status updates keep working; workers never see it, as
// they get a clean environment.

// notifyReady tells systemd that start-up is over: the listeners are open
// and connections are being accepted. Until then systemd holds queued
// connections and `systemctl start` waits.
func notifyReady() error {
	return sdNotify(daemon.SdNotifyReady)
}

// notifyReloading tells systemd a reload has begun; READY=1 ends it.
// MONOTONIC_USEC is the time of the signal's handling, which systemd 253's
// Type=notify-reload wants beside RELOADING=1 to tell this reload from an
// earlier one; systemd 252 (Debian 12) ignores it.
func notifyReloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("CLOCK_MONOTONIC: %w", err)
	}
	return sdNotify(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, ts.Nano()/1000))
}

// notifyStatus sets the one-line status `systemctl status` shows, e.g.
// notifyStatus("%d relays, %d logging in", r, p).
func notifyStatus(format string, args ...any) error {
	return sdNotify("STATUS=" + oneLine(fmt.Sprintf(format, args...)))
}

// notifyStopping tells systemd the supervisor is shutting down (on
// SIGTERM), so that it is not mistaken for a crash while it winds down.
func notifyStopping() error {
	return sdNotify(daemon.SdNotifyStopping)
}

func sdNotify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %s: %w", strings.SplitN(state, "=", 2)[0], err)
	}
	return nil
}

// oneLine keeps a status text to one assignment: a newline would start
// another one (a username in a status must not become MAINPID= or READY=).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, s)
}
