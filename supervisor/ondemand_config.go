// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xpra-proxy/xpra-proxy/logind"
)

// When the proxy starts a session for an authenticated user (PROXY.md §3,
// the reference's #1319).
const (
	StartNever     = "never"      // never: a user without a session is refused
	StartOnRequest = "on-request" // when the client's hello asks (start-new-session)
	StartAuto      = "auto"       // also when the user has no live session at all
)

// SessionConfig is how sessions on demand are started: a real `xpra start`
// as the user, in a logind session of its own (package logind).
type SessionConfig struct {
	StartSession        string   `toml:"start-session"`         // never, on-request (default), auto
	SessionCommand      []string `toml:"session-command"`       // the xpra program and arguments before the mode
	SessionArgs         []string `toml:"session-args"`          // the admin's xpra options for every session
	SessionProperties   []string `toml:"session-properties"`    // unit settings, "MemoryMax=4G" (logind.ParseProperty)
	SessionDisplays     string   `toml:"session-displays"`      // display numbers sessions may get, "N-M"
	SessionStartTimeout Duration `toml:"session-start-timeout"` // for the session's socket to appear
	SessionOverrides    []string `toml:"session-overrides"`     // the options a client may set
	SessionLeader       string   `toml:"session-leader"`        // path of xpra-proxy-session
	MaxSessionsPerUser  int      `toml:"max-sessions-per-user"` // proxy sessions one user may have; 0: no limit
}

// DefaultSessionOverrides are the options a client may set on a session it
// asks for: the reference's PROXY_START_OVERRIDABLE_OPTIONS less what
// changes who may reach the session or what the server itself loads —
// authentication (*-auth), listeners (bind*), mmap-group, mdns, html,
// ssh/rfb upgrades, the server's own environment (env) and the files it
// reads or sources (clipboard-filter-file, source, source-start,
// open-command, sound-source, use-display). Sessions run as the user, so
// these guard the admin's policy, not root.
var DefaultSessionOverrides = []string{
	"start", "start-child", "start-after-connect", "start-child-after-connect",
	"start-on-connect", "start-child-on-connect", "start-on-last-client-exit",
	"start-child-on-last-client-exit", "start-new-commands", "start-env", "chdir",
	"exit-with-children", "exit-with-client", "terminate-children",
	"dpi", "encoding", "encodings", "quality", "min-quality", "speed", "min-speed",
	"compression_level", "video-scaling", "title", "session-name",
	"clipboard", "clipboard-direction", "input-method", "microphone", "speaker", "pulseaudio",
	"idle-timeout", "server-idle-timeout", "fake-xinerama", "resize-display", "pixel-depth",
	"readonly", "keyboard-sync", "cursors", "bell", "notifications", "xsettings", "system-tray",
	"sharing", "lock", "windows", "webcam", "av-sync", "global-menus", "forward-xdg-open",
	"modal-windows", "bandwidth-detection", "bandwidth-limit", "printing", "file-transfer",
	"open-files", "open-url",
}

func sessionDefaults() SessionConfig {
	return SessionConfig{
		StartSession:        StartOnRequest,
		SessionCommand:      []string{"/usr/bin/xpra"},
		SessionDisplays:     "100-999",
		SessionStartTimeout: Duration{90 * time.Second}, // the reference's wait
		// A copy: decoding a TOML list may write into the slice it replaces.
		SessionOverrides:   slices.Clone(DefaultSessionOverrides),
		MaxSessionsPerUser: 4,
	}
}

func registerSessionFlags(fs *flag.FlagSet, c *SessionConfig) {
	fs.StringVar(&c.StartSession, "start-session", "", "start a session for a user: never, on-request (the client asks; default) or auto (also when the user has none)")
	fs.Var(listFlag{&c.SessionCommand}, "session-command", "the xpra program of started sessions, then any arguments before the mode (repeatable; default /usr/bin/xpra)")
	fs.Var(listFlag{&c.SessionArgs}, "session-arg", "an xpra option for every started session, e.g. --start=xterm (repeatable)")
	fs.Var(listFlag{&c.SessionProperties}, "session-property", "a unit setting for started sessions, e.g. MemoryMax=4G (repeatable)")
	fs.StringVar(&c.SessionDisplays, "session-displays", "", "display numbers started sessions may get, N-M (default 100-999)")
	fs.DurationVar(&c.SessionStartTimeout.Duration, "session-start-timeout", 0, "how long a started session may take to listen (default 90s)")
	fs.Var(listFlag{&c.SessionOverrides}, "session-override", "an option clients may set on sessions they start (repeatable; replaces the default list)")
	fs.StringVar(&c.SessionLeader, "session-leader", "", "path of xpra-proxy-session (default: beside this program, else "+logind.DefaultLeader+")")
	fs.Var(newCountFlag(&c.MaxSessionsPerUser), "max-sessions-per-user", "started sessions one user may have at once (default 4; 0: no limit)")
}

func mergeSession(c *SessionConfig, cli SessionConfig) {
	for _, p := range []struct{ dst, src *string }{
		{&c.StartSession, &cli.StartSession}, {&c.SessionDisplays, &cli.SessionDisplays}, {&c.SessionLeader, &cli.SessionLeader},
	} {
		if *p.src != "" {
			*p.dst = *p.src
		}
	}
	for _, p := range []struct{ dst, src *[]string }{
		{&c.SessionCommand, &cli.SessionCommand}, {&c.SessionArgs, &cli.SessionArgs},
		{&c.SessionProperties, &cli.SessionProperties}, {&c.SessionOverrides, &cli.SessionOverrides},
	} {
		if len(*p.src) > 0 {
			*p.dst = *p.src
		}
	}
	if cli.SessionStartTimeout.Duration > 0 {
		c.SessionStartTimeout = cli.SessionStartTimeout
	}
	if cli.MaxSessionsPerUser >= 0 {
		c.MaxSessionsPerUser = cli.MaxSessionsPerUser
	}
}

// check validates the settings and finds the leader program.
func (c *SessionConfig) check() error {
	switch c.StartSession {
	case StartNever, StartOnRequest, StartAuto:
	case "no", "off", "false":
		c.StartSession = StartNever
	case "yes", "on", "true":
		// The reference's proxy-start-sessions=yes starts on request and
		// for users without a session.
		c.StartSession = StartAuto
	default:
		return fmt.Errorf("start-session=%q: use never, on-request or auto", c.StartSession)
	}
	if _, _, err := parseDisplayRange(c.SessionDisplays); err != nil {
		return err
	}
	if len(c.SessionCommand) == 0 || !filepath.IsAbs(c.SessionCommand[0]) {
		return fmt.Errorf("session-command %q: the first word must be an absolute path", c.SessionCommand)
	}
	if c.SessionStartTimeout.Duration <= 0 {
		return fmt.Errorf("session-start-timeout %s: must be positive", c.SessionStartTimeout.Duration)
	}
	if c.MaxSessionsPerUser < 0 {
		return fmt.Errorf("max-sessions-per-user %d: 0 (no limit) or more", c.MaxSessionsPerUser)
	}
	for _, o := range c.SessionOverrides {
		if !optionName(o) {
			return fmt.Errorf("session-overrides: %q is not an option name", o)
		}
		if o == "daemon" || o == "systemd-run" || o == "start-via-proxy" || o == "uid" || o == "gid" {
			return fmt.Errorf("session-overrides: %q is the proxy's to set", o)
		}
	}
	for _, p := range c.SessionProperties {
		if _, err := logind.ParseProperty(p); err != nil {
			return fmt.Errorf("session-properties: %w", err)
		}
	}
	if c.SessionLeader == "" {
		c.SessionLeader = logind.DefaultLeader
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "xpra-proxy-session"); fileExists(p) {
				c.SessionLeader = p
			}
		}
	}
	if !filepath.IsAbs(c.SessionLeader) {
		return fmt.Errorf("session-leader %q: want an absolute path", c.SessionLeader)
	}
	return nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// parseDisplayRange reads "N-M" (or "N").
func parseDisplayRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		b = a
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 1 || hi < lo || hi > 65535 {
		return 0, 0, fmt.Errorf("session-displays=%q: want N-M with 1 <= N <= M <= 65535", s)
	}
	return lo, hi, nil
}

// optionName: what xpra's options look like ("start-child", "compression_level").
func optionName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
