// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/stats"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
)

// Sessions on demand (PROXY.md §3). A relay worker that finds its user
// without a session, or whose client asked for one (start-new-session),
// sends StartSession on its "session" channel. The supervisor serves each
// relay's channel in a goroutine of its own, so a start that takes seconds
// holds up no other connection (the reference blocks its main loop up to
// 90 s): it checks the request against the admin's allowlist, picks a free
// display, and has systemd start `xpra start :N --daemon=no ...` as the user
// in a logind session (logind.StartSession). The relay then waits, as the
// user, for the session's socket and connects the client.

// Limits on what a relay may ask for: one request of a few options.
const (
	maxStartOptions     = 64
	maxStartValues      = 32
	maxStartValueLength = 4096
	startCallTimeout    = 60 * time.Second // systemd and logind, not xpra's start-up
)

// starter starts the sessions; nil when start-session is never.
type starter struct {
	cfg       SessionConfig
	lo, hi    int
	props     []logind.Property
	overrides map[string]bool
	log       *slog.Logger
	// dial connects to systemd and logind (logind.Dial; tests may point it
	// elsewhere).
	dial func(context.Context) (*logind.Conn, error)

	*displayBook // the displays of sessions being started, shared across reloads

	dir *pgdir.DB // records the sessions started (route.go); nil without a shared directory
}

func newStarter(cfg SessionConfig, log *slog.Logger, book *displayBook) (*starter, error) {
	if cfg.StartSession == StartNever || cfg.StartSession == "" {
		return nil, nil
	}
	st := &starter{cfg: cfg, log: log.With("part", "sessions"), overrides: map[string]bool{},
		displayBook: book, dial: logind.Dial}
	var err error
	if st.lo, st.hi, err = parseDisplayRange(cfg.SessionDisplays); err != nil {
		return nil, err
	}
	for _, p := range cfg.SessionProperties {
		prop, err := logind.ParseProperty(p)
		if err != nil {
			return nil, fmt.Errorf("session-properties: %w", err)
		}
		st.props = append(st.props, prop)
	}
	st.props = logind.WithDefaults(st.props) // hardening the admin may override by name
	for _, o := range cfg.SessionOverrides {
		st.overrides[o] = true
	}
	return st, nil
}

// startOwner is whom a relay's channel starts sessions for.
type startOwner struct {
	pid        int    // the relay worker
	uid        uint32 // the user it runs as
	user       string
	remoteHost string       // PAM_RHOST: the client's address, "" for unix peers
	stats      *stats.Stats // counts the start (nil: not counted)
}

// serve answers one relay's session channel until the relay closes it.
// Only the relay itself (pid and uid, from the kernel) may ask, and only
// once: a connection starts at most one session.
func (st *starter) serve(ch *ipc.Conn, o startOwner) {
	defer ch.Close()
	log := st.log.With("worker", o.pid, "user", o.user)
	var started logind.Unit
	asked := false
	for {
		m, f, peer, err := ch.Recv()
		if f != nil {
			f.Close()
		}
		if err != nil {
			if !errors.Is(err, ipc.ErrClosed) {
				log.Warn("session channel", "err", err)
			}
			return
		}
		if !peer.Known || int(peer.Pid) != o.pid || peer.UID != o.uid {
			log.Warn("session request from the wrong process", "pid", peer.Pid, "uid", peer.UID)
			return
		}
		var reply ipc.Message
		switch m.Kind {
		case ipc.StartSession:
			if asked {
				reply = denied("one session per connection")
				break
			}
			asked = true
			reply, started = st.start(m, o, log)
			if reply.Kind == ipc.SessionStarted {
				recordLive(st.dir, log, o.user, reply.Display)
			}
			if o.stats != nil {
				result := stats.Failed
				if reply.Kind == ipc.SessionStarted {
					result = stats.OK
				}
				o.stats.Session(result)
			}
		case ipc.StopSession:
			// The relay gave up waiting: what it asked for goes.
			if started.Name != "" {
				st.stop(started, log)
				started = logind.Unit{}
			}
			reply = ipc.Message{Kind: ipc.SessionStopped}
		default:
			log.Warn("session channel", "unexpected", m.Kind)
			return
		}
		if err := ch.Send(reply, nil); err != nil {
			log.Warn("replying on the session channel", "err", err)
			return
		}
	}
}

// denied is a refusal with the reference's reason for a failed start
// (3.1.3: "server error", "failed to start a new session") and why.
func denied(why string) ipc.Message {
	d := []string{"failed to start a new session"}
	if why != "" {
		d = append(d, why)
	}
	return ipc.Message{Kind: ipc.Denied, Reason: "server error", Details: d}
}

// start handles one StartSession.
func (st *starter) start(m ipc.Message, o startOwner, log *slog.Logger) (ipc.Message, logind.Unit) {
	mode, err := startMode(m.Mode)
	if err != nil {
		log.Warn("session refused", "err", err)
		return denied(err.Error()), logind.Unit{}
	}
	opts, ignored, err := st.options(m.Options)
	if err != nil {
		log.Warn("session refused", "err", err)
		return denied(err.Error()), logind.Unit{}
	}
	if len(ignored) > 0 {
		// As the reference: options a client may not set are left out.
		log.Warn("ignoring start options not in session-overrides", "options", strings.Join(ignored, ","))
	}
	want := 0
	if m.Display != "" {
		if want, err = displayNumber(m.Display); err != nil || want < st.lo || want > st.hi {
			why := fmt.Sprintf("display %s is not one the proxy starts sessions on (:%d to :%d)", m.Display, st.lo, st.hi)
			log.Warn("session refused", "err", why)
			return denied(why), logind.Unit{}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startCallTimeout)
	defer cancel()
	c, err := st.dial(ctx)
	if err != nil {
		log.Error("starting a session", "err", err)
		return denied(""), logind.Unit{}
	}
	defer c.Close()
	all, err := c.ListSessions(ctx, logind.AnyUser)
	if err != nil {
		log.Error("starting a session", "err", err)
		return denied(""), logind.Unit{}
	}
	var busy []int
	live := map[string]bool{}
	mine := 0
	for _, s := range all {
		if !s.IsProxy() {
			continue
		}
		live[s.ID] = true
		if n, err := displayNumber(s.Display); err == nil {
			busy = append(busy, n)
		}
		if s.UID == o.uid && s.State != "closing" {
			mine++
		}
	}
	// Sessions that died since they were started give their display back
	// now, not when the reservation times out; starts still under way
	// count toward the user's sessions.
	mine += st.prune(live, o.uid)
	if st.cfg.MaxSessionsPerUser > 0 && mine >= st.cfg.MaxSessionsPerUser {
		why := fmt.Sprintf("%s has %d sessions already, the most allowed", o.user, mine)
		log.Warn("session refused", "err", why)
		return denied(why), logind.Unit{}
	}
	xs, err := xDisplays()
	if err != nil {
		log.Warn("listing X displays", "err", err) // the reservation and logind still count
	}
	xs = append(xs, lockedDisplays("/tmp")...)
	n, err := st.reserve(want, append(busy, xs...), o.uid)
	if err != nil {
		log.Warn("session refused", "err", err)
		return denied(err.Error()), logind.Unit{}
	}
	display := ":" + strconv.Itoa(n)
	spec := logind.Spec{
		User:        o.user,
		Command:     st.command(mode, display, opts),
		RemoteHost:  o.remoteHost,
		Display:     display,
		Leader:      st.cfg.SessionLeader,
		Properties:  st.props,
		Description: fmt.Sprintf("xpra session %s of %s", display, o.user),
	}
	t0 := time.Now()
	u, err := c.StartSession(ctx, spec)
	if err != nil {
		st.release(n)
		log.Error("starting a session", "display", display, "err", err)
		return denied(""), logind.Unit{}
	}
	st.started(n, u.Session.ID)
	args := []any{audit.Event(audit.SessionStarted), audit.KeyDisplay, display, "unit", u.Name, "session", u.Session.ID,
		"leader", u.Session.Leader, "mode", mode, "took", time.Since(t0).Round(time.Millisecond)}
	if o.remoteHost != "" {
		// As "session ended" names it: behind a load balancer, the
		// client's address from its PROXY header, not the balancer's.
		args = append(args, "remote_host", o.remoteHost)
	}
	log.Info("session started", args...)
	return ipc.Message{Kind: ipc.SessionStarted, Display: display, Unit: u.Name, Session: u.Session.ID,
		Leader: int(u.Session.Leader), WaitMS: st.cfg.SessionStartTimeout.Milliseconds()}, u
}

// stop ends a session the relay gave up on, as the reference stops the
// server it started when connecting fails.
func (st *starter) stop(u logind.Unit, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := st.dial(ctx)
	if err == nil {
		defer c.Close()
		err = c.Terminate(ctx, u.Session.ID)
	}
	if err != nil && !errors.Is(err, logind.ErrNoSession) {
		log.Warn("ending an abandoned session", "unit", u.Name, "session", u.Session.ID, "err", err)
		return
	}
	log.Info("abandoned session ended", "unit", u.Name, "session", u.Session.ID)
}

// startMode maps the client's mode, with 6.x's names, to xpra 3.1's
// subcommand. Shadowing an existing display is not started here.
func startMode(m string) (string, error) {
	switch m {
	case "", "start", "seamless":
		return "start", nil
	case "start-desktop", "desktop":
		return "start-desktop", nil
	}
	if len(m) > 32 || !utf8.ValidString(m) {
		m = "?"
	}
	return "", fmt.Errorf("cannot start sessions of mode %q (start, start-desktop)", m)
}

// options keeps the client's options the admin allows, checked to be plain
// text; the rest are named in ignored.
func (st *starter) options(in map[string][]string) (map[string][]string, []string, error) {
	if len(in) > maxStartOptions {
		return nil, nil, fmt.Errorf("too many start options (%d, at most %d)", len(in), maxStartOptions)
	}
	out := map[string][]string{}
	var ignored []string
	for k, vs := range in {
		if !optionName(k) {
			return nil, nil, errors.New("invalid start option name")
		}
		if !st.overrides[k] {
			ignored = append(ignored, k)
			continue
		}
		if len(vs) == 0 || len(vs) > maxStartValues {
			return nil, nil, fmt.Errorf("start option %s: 1 to %d values", k, maxStartValues)
		}
		for _, v := range vs {
			if len(v) > maxStartValueLength || !plainText(v) {
				return nil, nil, fmt.Errorf("start option %s: a value with control characters or over %d bytes", k, maxStartValueLength)
			}
		}
		out[k] = vs
	}
	slices.Sort(ignored)
	return out, ignored, nil
}

// plainText: valid UTF-8 without control characters (systemd and xpra's
// option parser both take it as it is).
func plainText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// command is the session's xpra command line: the admin's options, then
// the client's, then what the proxy needs (later options win in xpra).
func (st *starter) command(mode, display string, opts map[string][]string) []string {
	args := append(slices.Clone(st.cfg.SessionCommand), mode, display)
	args = append(args, st.cfg.SessionArgs...)
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		flag := k
		if k == "compression_level" { // the reference's name; the command line's is --compress
			flag = "compress"
		}
		for _, v := range opts[k] {
			args = append(args, "--"+flag+"="+v)
		}
	}
	// In the foreground: the session unit's main process is its leader, who
	// waits for this one; systemd-run would leave the session's scope.
	return append(args, "--daemon=no", "--systemd-run=no", "--start-via-proxy=no")
}

// reserve picks a display: want if it is free, else the lowest free one
// in the range. Free means not taken by a proxy session (logind's
// Display), by an X server listening (busy) or by a recent reservation:
// an X server takes a moment to listen.
func (st *starter) reserve(want int, busy []int, uid uint32) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	for n, r := range st.reserved {
		if now.After(r.until) {
			delete(st.reserved, n)
		}
	}
	taken := func(n int) bool {
		_, r := st.reserved[n]
		return r || slices.Contains(busy, n)
	}
	pick := 0
	if want != 0 {
		if taken(want) {
			return 0, fmt.Errorf("display :%d is already active!", want)
		}
		pick = want
	} else {
		for n := st.lo; n <= st.hi; n++ {
			if !taken(n) {
				pick = n
				break
			}
		}
		if pick == 0 {
			return 0, fmt.Errorf("no free display in :%d to :%d", st.lo, st.hi)
		}
	}
	st.reserved[pick] = reservation{until: now.Add(st.cfg.SessionStartTimeout.Duration + 30*time.Second), uid: uid}
	return pick, nil
}

// reservation holds a display for a session being started, until its X
// server listens (then logind and the X socket show it) or until it is
// seen dead.
type reservation struct {
	until   time.Time
	uid     uint32
	session string // logind's session id once started; "" while starting
}

// started records the logind session a reserved display went to.
func (st *starter) started(n int, session string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if r, ok := st.reserved[n]; ok {
		r.session = session
		st.reserved[n] = r
	}
}

// prune releases the displays of started sessions that logind no longer
// lists (live: the proxy's sessions now), and returns how many starts of
// uid are still under way.
func (st *starter) prune(live map[string]bool, uid uint32) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	starting := 0
	for n, r := range st.reserved {
		switch {
		case r.session != "" && !live[r.session]:
			delete(st.reserved, n)
		case r.session == "" && r.uid == uid:
			starting++
		}
	}
	return starting
}

func (st *starter) release(n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.reserved, n)
}

// displayNumber reads ":N" (or ":N.S").
func displayNumber(d string) (int, error) {
	s, ok := strings.CutPrefix(d, ":")
	if !ok {
		return 0, fmt.Errorf("display %q: want :N", d)
	}
	s, _, _ = strings.Cut(s, ".")
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || len(s) > 9 {
		return 0, fmt.Errorf("display %q: want :N", d)
	}
	return n, nil
}

// xDisplays lists the X displays something listens on in this network
// namespace: X servers bind /tmp/.X11-unix/XN and, on Linux, the abstract
// @/tmp/.X11-unix/XN. The kernel's socket table shows both even though
// the supervisor's own /tmp is private (PrivateTmp=yes), where the lock
// files are out of sight.
func xDisplays() ([]int, error) {
	f, err := os.Open("/proc/self/net/unix")
	if err != nil {
		return nil, fmt.Errorf("listing unix sockets: %w", err)
	}
	defer f.Close()
	return parseXSockets(f)
}

// lockedDisplays are the displays with an X lock file in dir (/tmp),
// live or stale: an X server refuses a display whose lock it cannot
// remove, and a stale lock another user left cannot be removed by this
// one (/tmp is sticky), so such a session would end while starting.
// Stale locks are few and go at the next boot: skipping them costs the
// range little.
func lockedDisplays(dir string) []int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), ".X")
		if !ok {
			continue
		}
		num, ok := strings.CutSuffix(rest, "-lock")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(num); err == nil && n >= 0 {
			out = append(out, n)
		}
	}
	return out
}

func parseXSockets(r io.Reader) ([]int, error) {
	var out []int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		path := strings.TrimPrefix(fields[len(fields)-1], "@")
		rest, ok := strings.CutPrefix(path, "/tmp/.X11-unix/X")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("listing unix sockets: %w", err)
	}
	return out, nil
}
