// SPDX-License-Identifier: GPL-2.0-or-later

package logind

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"
)

// ServiceName is the PAM service of proxy-started sessions, which logind
// shows as their Service.
const ServiceName = "xpra-proxy"

// AnyUser makes ListSessions return every user's sessions.
const AnyUser = ^uint32(0)

// Session is what logind says about one session.
type Session struct {
	ID         string // "3", or "c3" where there is no audit session id
	UID        uint32
	User       string // login name
	Class      string // user, background, greeter, ...
	Type       string // x11, tty, unspecified, ...
	Remote     bool
	RemoteHost string
	Service    string // PAM service: ServiceName for the proxy's sessions
	State      string // online, active, closing
	Scope      string // e.g. session-3.scope
	Leader     uint32 // pid of the session leader
	Display    string
	Since      time.Time
}

// IsProxy reports whether the proxy started the session (its PAM service is
// ServiceName), which is what `xpra-proxy sessions` lists and the only kind
// `xpra-proxy terminate` should end.
func (s Session) IsProxy() bool { return s.Service == ServiceName }

// ErrNoSession means logind does not know the session (any more).
var ErrNoSession = errors.New("no such session")

// ListSessions returns the sessions of uid (AnyUser: of everyone). A session
// that ends while it is being listed is left out.
func (c *Conn) ListSessions(ctx context.Context, uid uint32) ([]Session, error) {
	var list []struct {
		ID   string
		UID  uint32
		User string
		Seat string
		Path dbus.ObjectPath
	}
	if err := c.manager().CallWithContext(ctx, login1Manager+".ListSessions", 0).Store(&list); err != nil {
		return nil, fmt.Errorf("logind: ListSessions: %w", err)
	}
	var out []Session
	for _, s := range list {
		if uid != AnyUser && s.UID != uid {
			continue
		}
		sess, err := c.sessionAt(ctx, s.Path)
		if errors.Is(err, ErrNoSession) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sess)
	}
	return out, nil
}

// Session returns one session by id.
func (c *Conn) Session(ctx context.Context, id string) (Session, error) {
	path, err := c.sessionPath(ctx, id)
	if err != nil {
		return Session{}, err
	}
	return c.sessionAt(ctx, path)
}

// SessionByPID returns the session a process belongs to.
func (c *Conn) SessionByPID(ctx context.Context, pid uint32) (Session, error) {
	var path dbus.ObjectPath
	err := c.manager().CallWithContext(ctx, login1Manager+".GetSessionByPID", 0, pid).Store(&path)
	if err != nil {
		return Session{}, fmt.Errorf("logind: session of pid %d: %w", pid, noSession(err))
	}
	return c.sessionAt(ctx, path)
}

func (c *Conn) sessionPath(ctx context.Context, id string) (dbus.ObjectPath, error) {
	var path dbus.ObjectPath
	if err := c.manager().CallWithContext(ctx, login1Manager+".GetSession", 0, id).Store(&path); err != nil {
		return "", fmt.Errorf("logind: session %q: %w", id, noSession(err))
	}
	return path, nil
}

func (c *Conn) sessionAt(ctx context.Context, path dbus.ObjectPath) (Session, error) {
	var p map[string]dbus.Variant
	err := c.bus.Object(login1Dest, path).CallWithContext(ctx, "org.freedesktop.DBus.Properties.GetAll", 0, login1Session).Store(&p)
	if err != nil {
		return Session{}, fmt.Errorf("logind: properties of %s: %w", path, noSession(err))
	}
	var s Session
	s.ID, _ = p["Id"].Value().(string)
	if u, ok := p["User"].Value().([]any); ok && len(u) == 2 {
		s.UID, _ = u[0].(uint32)
	}
	s.User, _ = p["Name"].Value().(string)
	s.Class, _ = p["Class"].Value().(string)
	s.Type, _ = p["Type"].Value().(string)
	s.Remote, _ = p["Remote"].Value().(bool)
	s.RemoteHost, _ = p["RemoteHost"].Value().(string)
	s.Service, _ = p["Service"].Value().(string)
	s.State, _ = p["State"].Value().(string)
	s.Scope, _ = p["Scope"].Value().(string)
	s.Leader, _ = p["Leader"].Value().(uint32)
	s.Display, _ = p["Display"].Value().(string)
	if us, ok := p["Timestamp"].Value().(uint64); ok && us > 0 {
		s.Since = time.UnixMicro(int64(us))
	}
	if s.ID == "" {
		// A session object that vanished between listing and reading.
		return Session{}, fmt.Errorf("logind: %s: %w", path, ErrNoSession)
	}
	return s, nil
}

// noSession maps logind's and the bus's "not there" errors to ErrNoSession.
func noSession(err error) error {
	var de dbus.Error
	if errors.As(err, &de) {
		switch de.Name {
		case "org.freedesktop.login1.NoSuchSession",
			"org.freedesktop.login1.NoSessionForPID",
			"org.freedesktop.DBus.Error.UnknownObject",
			"org.freedesktop.DBus.Error.UnknownMethod",
			"org.freedesktop.DBus.Error.UnknownInterface":
			return fmt.Errorf("%w (%s)", ErrNoSession, de.Error())
		}
	}
	return err
}

// Terminate ends a session: logind stops its scope, which kills every
// process in it. It returns once logind has forgotten the session, so a
// session left in "closing" is an error, not a success; ctx bounds the wait.
func (c *Conn) Terminate(ctx context.Context, id string) error {
	if err := c.manager().CallWithContext(ctx, login1Manager+".TerminateSession", 0, id).Err; err != nil {
		return fmt.Errorf("logind: TerminateSession %q: %w", id, noSession(err))
	}
	return c.WaitGone(ctx, id)
}

// WaitGone waits until logind no longer knows session id.
func (c *Conn) WaitGone(ctx context.Context, id string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	state := "there"
	for {
		s, err := c.Session(ctx, id)
		switch {
		case errors.Is(err, ErrNoSession):
			return nil
		case err == nil:
			state = s.State
		case ctx.Err() == nil:
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logind: session %s still %s: %w", id, state, ctx.Err())
		case <-tick.C:
		}
	}
}

// EventKind says what happened to a session.
type EventKind int

const (
	SessionNew EventKind = iota + 1
	SessionRemoved
)

func (k EventKind) String() string {
	switch k {
	case SessionNew:
		return "SessionNew"
	case SessionRemoved:
		return "SessionRemoved"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one of logind's SessionNew / SessionRemoved signals.
type Event struct {
	Kind EventKind
	ID   string
	Path dbus.ObjectPath
}

// Watch delivers logind's SessionNew and SessionRemoved signals until ctx is
// done or the bus connection ends, then closes the channel (a caller that
// must not miss events watches again and lists). It uses a connection of its
// own, so a slow reader delays only its own events.
func (c *Conn) Watch(ctx context.Context) (<-chan Event, error) {
	bus, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("logind: watch: connecting to the system bus: %w", err)
	}
	for _, member := range []string{"SessionNew", "SessionRemoved"} {
		if err := bus.AddMatchSignalContext(ctx,
			dbus.WithMatchSender(login1Dest),
			dbus.WithMatchObjectPath(login1Path),
			dbus.WithMatchInterface(login1Manager),
			dbus.WithMatchMember(member)); err != nil {
			bus.Close()
			return nil, fmt.Errorf("logind: watch %s: %w", member, err)
		}
	}
	sig := make(chan *dbus.Signal, 64)
	bus.Signal(sig)
	out := make(chan Event)
	go func() {
		defer close(out)
		defer bus.Close()
		for {
			var s *dbus.Signal
			var ok bool
			select {
			case <-ctx.Done():
				return
			case s, ok = <-sig:
				if !ok { // the bus connection ended
					return
				}
			}
			ev, ok := parseEvent(s)
			if !ok {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case out <- ev:
			}
		}
	}()
	return out, nil
}

func parseEvent(s *dbus.Signal) (Event, bool) {
	if s == nil || s.Path != login1Path || len(s.Body) != 2 {
		return Event{}, false
	}
	var ev Event
	switch s.Name {
	case login1Manager + ".SessionNew":
		ev.Kind = SessionNew
	case login1Manager + ".SessionRemoved":
		ev.Kind = SessionRemoved
	default:
		return Event{}, false
	}
	id, ok1 := s.Body[0].(string)
	path, ok2 := s.Body[1].(dbus.ObjectPath)
	if !ok1 || !ok2 {
		return Event{}, false
	}
	ev.ID, ev.Path = id, path
	return ev, true
}
