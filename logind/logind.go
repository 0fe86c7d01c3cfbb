// SPDX-License-Identifier: GPL-2.0-or-later

// Package logind starts proxy sessions as logind sessions and observes them,
// through systemd's and logind's D-Bus APIs.
//
// A session is a transient system service unit started by PID 1
// (StartTransientUnit), so it lives outside the supervisor's cgroup and
// sandbox and survives `systemctl restart xpra-proxy.service`. Its main
// process is the session leader (package logind/leader, binary
// xpra-proxy-session): it runs the PAM session stack of the service
// "xpra-proxy", so that pam_systemd registers the logind session (nothing here
// calls logind's CreateSession), starts the payload (xpra) as the user, and
// ends the whole session when the payload exits, so no session is left in
// "closing".
//
// Why a leader of our own instead of the unit's PAMName=: systemd's PAM
// set-up (setup_pam in its exec code) sets PAM_TTY and the environment but
// never PAM_RHOST, and pam_systemd takes RemoteHost, and from it Remote=yes,
// only from PAM_RHOST. With PAMName= every session would show Remote=no and
// no client address. The leader is what systemd's own "(sd-pam)" process is:
// it keeps the PAM handle open for the session's lifetime and closes it, after
// giving up root once the payload runs.
//
// pam_systemd moves the leader, and so everything it starts, into the
// session's scope (user-UID.slice/session-ID.scope); the service's own cgroup
// stays empty. Per-process sandboxing (namespaces, no_new_privs, seccomp) is
// therefore set on the service, where the processes start, and cgroup
// resource control on the scope, once logind has made it (see Property).
package logind

import (
	"context"
	"fmt"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// D-Bus names of logind.
const (
	login1Dest    = "org.freedesktop.login1"
	login1Path    = dbus.ObjectPath("/org/freedesktop/login1")
	login1Manager = "org.freedesktop.login1.Manager"
	login1Session = "org.freedesktop.login1.Session"
)

// Conn talks to systemd (units) and logind (sessions) on the system bus.
// It is safe for concurrent use.
type Conn struct {
	systemd *sddbus.Conn
	bus     *dbus.Conn
}

// Dial connects to the system bus. The connections last until Close or
// until ctx is done (godbus ties them to it), so ctx is the caller's
// lifetime, not a dial timeout. The supervisor (root) may start units; any
// user may list sessions.
func Dial(ctx context.Context) (*Conn, error) {
	sd, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("logind: connecting to systemd on the system bus: %w", err)
	}
	bus, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		sd.Close()
		return nil, fmt.Errorf("logind: connecting to the system bus: %w", err)
	}
	return &Conn{systemd: sd, bus: bus}, nil
}

// Close closes the connections.
func (c *Conn) Close() error {
	c.systemd.Close()
	return c.bus.Close()
}

func (c *Conn) manager() dbus.BusObject { return c.bus.Object(login1Dest, login1Path) }
