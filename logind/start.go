// SPDX-License-Identifier: GPL-2.0-or-later

package logind

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// DefaultLeader is where packages install the session leader.
const DefaultLeader = "/usr/libexec/xpra-proxy/xpra-proxy-session"

// UnitPrefix starts the name of every session unit. systemd applies drop-ins
// in /etc/systemd/system/xpra-proxy-session-.service.d/ to all of them, which
// is another way for an admin to sandbox sessions.
const UnitPrefix = "xpra-proxy-session-"

// Spec describes one session to start.
type Spec struct {
	User    string   // login name; uid 0 is refused
	Command []string // the payload, absolute path first (`xpra start :N --daemon=no ...`)
	Env     []string // "NAME=value" for the payload, on top of what the leader sets

	// RemoteHost is the client's address. It becomes PAM_RHOST, so logind
	// shows Remote=yes and RemoteHost. Empty for local clients (unix socket).
	RemoteHost string
	Type       string // XDG_SESSION_TYPE; default "x11": xpra sessions are X11 displays
	Class      string // XDG_SESSION_CLASS; default "user": a person's desktop
	Desktop    string // XDG_SESSION_DESKTOP; default "xpra"
	Display    string // PAM_XDISPLAY (":10"), if known before the start

	Leader      string     // the session leader binary; default DefaultLeader
	PAMService  string     // default ServiceName
	Unit        string     // unit name; default UnitPrefix + "UID-RANDOM.service"
	Description string     // default "xpra session of USER"
	Slice       string     // the service's slice (holds it only until PAM moves it to the session scope)
	Properties  []Property // the admin's sandbox and resource settings
	StopTimeout time.Duration
}

// Unit is a started session.
type Unit struct {
	Name    string  // the transient service unit
	Session Session // logind's session, as registered
}

// StartSession starts spec as a transient service unit and returns once
// logind has registered its session and the scope settings are applied. If
// the leader fails first (unknown user, PAM refuses the account, ...), the
// error says so and where its log is. On any error nothing is left running.
func (c *Conn) StartSession(ctx context.Context, spec Spec) (Unit, error) {
	spec, uid, err := spec.complete()
	if err != nil {
		return Unit{}, err
	}
	serviceProps, scopeProps := split(spec.Properties)
	props := append(spec.unitProperties(), serviceProps...)

	done := make(chan string, 1)
	if _, err := c.systemd.StartTransientUnitContext(ctx, spec.Unit, "fail", props, done); err != nil {
		return Unit{}, fmt.Errorf("logind: starting %s: %w", spec.Unit, err)
	}
	u := Unit{Name: spec.Unit}
	fail := func(err error) (Unit, error) {
		c.stop(spec.Unit)
		return Unit{}, err
	}
	select {
	case res := <-done:
		if res != "done" {
			return fail(fmt.Errorf("logind: starting %s: job %s (journalctl -u %s)", spec.Unit, res, spec.Unit))
		}
	case <-ctx.Done():
		return fail(fmt.Errorf("logind: starting %s: %w", spec.Unit, ctx.Err()))
	}

	// The session exists once the leader's pam_open_session returned:
	// logind then finds the leader's pid in it.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		pid, err := c.mainPID(ctx, spec.Unit)
		if err != nil {
			return fail(err)
		}
		if pid == 0 {
			return fail(fmt.Errorf("logind: %s ended before logind registered its session (the leader's reason: journalctl -u %s)", spec.Unit, spec.Unit))
		}
		s, err := c.SessionByPID(ctx, pid)
		if err != nil && !errors.Is(err, ErrNoSession) {
			return fail(err)
		}
		// "opening" lasts until logind's scope job is done.
		if err == nil && s.UID == uid && s.Service == spec.PAMService && s.State != "opening" {
			if s.State == "closing" {
				c.terminateQuietly(s.ID)
				return fail(fmt.Errorf("logind: session %s of %s is closing already (journalctl -u %s)", s.ID, spec.Unit, spec.Unit))
			}
			u.Session = s
			break
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("logind: waiting for the session of %s: %w", spec.Unit, ctx.Err()))
		case <-tick.C:
		}
	}
	if len(scopeProps) > 0 {
		if err := c.systemd.SetUnitPropertiesContext(ctx, u.Session.Scope, true, scopeProps...); err != nil {
			c.terminateQuietly(u.Session.ID)
			return fail(fmt.Errorf("logind: resource settings for %s: %w", u.Session.Scope, err))
		}
	}
	return u, nil
}

// complete checks spec and fills in the defaults.
func (spec Spec) complete() (Spec, uint32, error) {
	if spec.User == "" {
		return spec, 0, errors.New("logind: no user")
	}
	pw, err := user.Lookup(spec.User)
	if err != nil {
		return spec, 0, fmt.Errorf("logind: user %q: %w", spec.User, err)
	}
	uid64, err := strconv.ParseUint(pw.Uid, 10, 32)
	if err != nil {
		return spec, 0, fmt.Errorf("logind: user %q: uid %q: %w", spec.User, pw.Uid, err)
	}
	if uid64 == 0 {
		return spec, 0, fmt.Errorf("logind: user %q has uid 0: no sessions for root", spec.User)
	}
	uid := uint32(uid64)
	if len(spec.Command) == 0 || !filepath.IsAbs(spec.Command[0]) {
		return spec, 0, fmt.Errorf("logind: the session command must start with an absolute path, got %q", spec.Command)
	}
	for _, a := range spec.Command {
		if !safeString(a, false) {
			return spec, 0, fmt.Errorf("logind: session command argument %q: control characters or bad UTF-8", a)
		}
	}
	for _, kv := range spec.Env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !envName(name) || !safeString(value, true) {
			return spec, 0, fmt.Errorf("logind: session environment %q: want NAME=value without control characters", kv)
		}
	}
	if len(spec.RemoteHost) > 253 || !printable(spec.RemoteHost) {
		return spec, 0, fmt.Errorf("logind: remote host %q: at most 253 printable characters", spec.RemoteHost)
	}
	for _, f := range []struct{ v *string }{{&spec.Type}, {&spec.Class}, {&spec.Desktop}, {&spec.Display}} {
		if len(*f.v) > 64 || !printable(*f.v) {
			return spec, 0, fmt.Errorf("logind: session type/class/desktop/display %q: at most 64 printable characters", *f.v)
		}
	}
	for _, p := range spec.Properties {
		if p.dbus.Name == "" {
			return spec, 0, errors.New("logind: a session property not made by ParseProperty")
		}
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&spec.Type, "x11")
	def(&spec.Class, "user")
	def(&spec.Desktop, "xpra")
	def(&spec.Leader, DefaultLeader)
	def(&spec.PAMService, ServiceName)
	def(&spec.Description, "xpra session of "+spec.User)
	if spec.Unit == "" {
		var r [4]byte
		if _, err := rand.Read(r[:]); err != nil {
			return spec, 0, fmt.Errorf("logind: unit name: %w", err)
		}
		spec.Unit = fmt.Sprintf("%s%d-%s.service", UnitPrefix, uid, hex.EncodeToString(r[:]))
	}
	if !unitName(spec.Unit, ".service") {
		return spec, 0, fmt.Errorf("logind: unit name %q: want letters, digits, ':-_.\\@', ending in .service", spec.Unit)
	}
	if spec.Slice != "" && !unitName(spec.Slice, ".slice") {
		return spec, 0, fmt.Errorf("logind: slice %q: want a unit name ending in .slice", spec.Slice)
	}
	if !filepath.IsAbs(spec.Leader) || !printable(spec.Leader) || !printable(spec.PAMService) {
		return spec, 0, fmt.Errorf("logind: leader %q: want an absolute path; PAM service %q: printable", spec.Leader, spec.PAMService)
	}
	if !safeString(spec.Description, false) {
		return spec, 0, fmt.Errorf("logind: description %q: control characters or bad UTF-8", spec.Description)
	}
	if spec.StopTimeout <= 0 {
		spec.StopTimeout = 30 * time.Second
	}
	return spec, uid, nil
}

// LeaderArgs is the leader's command line for spec (defaults filled in);
// package leader parses it.
func LeaderArgs(spec Spec) []string {
	args := []string{spec.Leader,
		"--user=" + spec.User,
		"--pam-service=" + spec.PAMService,
		"--type=" + spec.Type,
		"--class=" + spec.Class,
		"--desktop=" + spec.Desktop,
	}
	if spec.RemoteHost != "" {
		args = append(args, "--rhost="+spec.RemoteHost)
	}
	if spec.Display != "" {
		args = append(args, "--display="+spec.Display)
	}
	return append(append(args, "--"), spec.Command...)
}

func (spec Spec) unitProperties() []sddbus.Property {
	props := []sddbus.Property{
		sddbus.PropDescription(spec.Description),
		// false: a failing leader fails the unit. (The D-Bus field is
		// systemd's "ignore failure", whatever go-systemd calls it.)
		sddbus.PropExecStart(LeaderArgs(spec), false),
		// SIGTERM to the leader alone: it passes it on to the payload and
		// then ends the session; the rest of the session is in its scope.
		prop("KillMode", "mixed"),
		prop("TimeoutStopUSec", uint64(spec.StopTimeout/time.Microsecond)),
		// A session that failed leaves nothing behind but its journal.
		prop("CollectMode", "inactive-or-failed"),
	}
	if len(spec.Env) > 0 {
		props = append(props, prop("Environment", spec.Env))
	}
	if spec.Slice != "" {
		props = append(props, sddbus.PropSlice(spec.Slice))
	}
	return props
}

// mainPID is the unit's main pid, 0 once it has ended (systemd answers for
// a collected unit too, with 0).
func (c *Conn) mainPID(ctx context.Context, unit string) (uint32, error) {
	p, err := c.systemd.GetServicePropertyContext(ctx, unit, "MainPID")
	if err != nil {
		return 0, fmt.Errorf("logind: main pid of %s: %w", unit, err)
	}
	pid, _ := p.Value.Value().(uint32)
	return pid, nil
}

// stop stops a unit after a failed start, bounded in time of its own since
// the caller's context may be what expired.
func (c *Conn) stop(unit string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = c.systemd.StopUnitContext(ctx, unit, "replace", nil)
}

func (c *Conn) terminateQuietly(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.Terminate(ctx, id)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// safeString: valid UTF-8 without control characters (tab allowed in values).
func safeString(s string, tab bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if (r < ' ' && !(tab && r == '\t')) || r == 0x7f {
			return false
		}
	}
	return true
}

func envName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func unitName(s, suffix string) bool {
	base, ok := strings.CutSuffix(s, suffix)
	if !ok || base == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(base); i++ {
		c := base[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte(":-_.\\@", c) >= 0) {
			return false
		}
	}
	return true
}
