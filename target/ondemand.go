// SPDX-License-Identifier: GPL-2.0-or-later

package target

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/sockdir"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// Sessions on demand, the relay's half (the supervisor's is in
// supervisor/ondemand.go). The relay runs as the user: it decides that a
// session is needed, asks the supervisor (root) to start one over its
// "session" channel, then waits as the user for the session's socket, so
// the supervisor never touches the user's files.

// Start modes the supervisor passes with --start-session.
const (
	StartOnRequest = "on-request" // the client's hello asks (start-new-session)
	StartAuto      = "auto"       // also when the user has no session
)

// How long the relay waits for the supervisor's answer: systemd and
// logind's part of a start (the supervisor gives up after 60 s).
const startReplyTimeout = 70 * time.Second

// Started is a session started for this connection.
type Started struct {
	Display string
	Socket  string // its socket, once live
	Mode    string // the client's mode, echoed when it does not connect
}

// Choose is the display the client with hello h connects to. It starts a
// session first when the client asked for one or, with
// start-session=auto, when the user has no session to go to; otherwise
// it is ChooseDisplay's pick. The session channel is closed when it
// returns: a connection starts one session at most.
func (s *Finder) Choose(ctx context.Context, h caps.Hello) (string, *Started, error) {
	defer s.closeSessions()
	sns, asked := startRequest(h)
	displays := s.Displays()
	// Only a client that will use the session gets one unasked (not, say,
	// `xpra detach`).
	auto := s.StartMode == StartAuto && Request(h) == "" && h.Connect
	if !asked && !(auto && s.noSession(displays)) {
		d, err := ChooseDisplay(h.Display, displays)
		return d, nil, err
	}
	if s.Sessions == nil {
		return "", nil, &Error{packet.ReasonSessionNotFound, "no displays found (this proxy does not start sessions)"}
	}
	req, err := startMessage(sns)
	if err != nil {
		return "", nil, &Error{packet.ReasonServerError, "failed to start a new session: " + err.Error()}
	}
	if !asked {
		s.Log.Info("no session: starting one (start-session=auto)")
	} else if req.Display != "" && containsDisplay(displays, req.Display) {
		return "", nil, &Error{packet.ReasonServerError, "failed to start a new session: display " + req.Display + " is already active!"}
	}
	if dir := req.Options["chdir"]; len(dir) == 1 && !isDir(dir[0]) {
		// xpra 3.1 clients send their own working directory: a path on
		// their machine, which would stop the server at start-up here.
		s.Log.Info("dropping the start option chdir: not a directory here", "chdir", dir[0])
		delete(req.Options, "chdir")
	}
	st, err := s.startSession(ctx, req)
	if err != nil {
		return "", nil, err
	}
	st.Mode, _ = value.AsString(sns.mode)
	return st.Display, st, nil
}

func (s *Finder) closeSessions() {
	if s.Sessions != nil {
		s.Sessions.Close()
		s.Sessions = nil
	}
}

// startSpec is the hello's start-new-session dict, read loosely.
type startSpec struct {
	mode, display any
	options       value.Dict
}

// startRequest reads the hello's start-new-session dict; an empty or
// absent one asks for nothing (Python's truthiness, as the reference).
func startRequest(h caps.Hello) (startSpec, bool) {
	v, ok := h.Lookup("start-new-session")
	d, isDict := v.(value.Dict)
	if !ok || !isDict || len(d) == 0 {
		return startSpec{}, false
	}
	var sp startSpec
	for _, it := range d {
		k, _ := value.AsString(it.Key)
		switch k {
		case "mode":
			sp.mode = it.Value
		case "display":
			sp.display = it.Value
		default:
			sp.options = append(sp.options, it)
		}
	}
	return sp, true
}

// startMessage turns the client's request into the supervisor's: option
// values as text (xpra's option syntax: yes/no, numbers, repeated values
// for lists). The supervisor checks names and values again; this only
// refuses what has no text form.
func startMessage(sp startSpec) (ipc.Message, error) {
	m := ipc.Message{Kind: ipc.StartSession, Options: map[string][]string{}}
	if sp.mode != nil {
		mode, ok := value.AsString(sp.mode)
		if !ok {
			return m, errors.New("invalid mode")
		}
		m.Mode = mode
	}
	if sp.display != nil {
		d, ok := value.AsString(sp.display)
		if !ok {
			return m, errors.New("invalid display")
		}
		m.Display = NormalizeDisplay(d)
	}
	for _, it := range sp.options {
		k, ok := value.AsString(it.Key)
		if !ok {
			return m, errors.New("invalid option name")
		}
		var vals []string
		if l, isList := it.Value.([]any); isList {
			for _, e := range l {
				t, ok := optionText(e)
				if !ok {
					return m, fmt.Errorf("invalid value for %q", k)
				}
				vals = append(vals, t)
			}
		} else if it.Value != nil {
			t, ok := optionText(it.Value)
			if !ok {
				return m, fmt.Errorf("invalid value for %q", k)
			}
			vals = []string{t}
		}
		if len(vals) > 0 {
			m.Options[k] = append(m.Options[k], vals...)
		}
	}
	return m, nil
}

// optionText is a scalar in xpra's command-line syntax.
func optionText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	case bool:
		if x {
			return "yes", true
		}
		return "no", true
	case int64:
		return strconv.FormatInt(x, 10), true
	case *big.Int:
		return x.String(), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), true
	}
	return "", false
}

// noSession: nothing to connect to, and (for modules that list displays)
// no live session of the user's own either, so that a module's empty list
// does not start a new session on every connection (reference #3021).
func (s *Finder) noSession(displays []string) bool {
	if _, err := ChooseDisplay("", displays); err != nil {
		var te *Error
		if !errors.As(err, &te) || te.Detail != "no displays found" {
			return false // several: the client must choose
		}
	} else {
		return false
	}
	if s.Launch.Displays == nil {
		return true // displays was the scan
	}
	sessions, _ := sockdir.List(s.SocketDirs(), sockdir.Hostname())
	for _, se := range sessions {
		if se.State == sockdir.Live && s.OwnSocket(se.Path) {
			return false
		}
	}
	return true
}

func containsDisplay(displays []string, d string) bool {
	for _, x := range displays {
		if NormalizeDisplay(x) == d {
			return true
		}
	}
	return false
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// startSession asks the supervisor and waits for the session's socket.
func (s *Finder) startSession(ctx context.Context, req ipc.Message) (*Started, error) {
	ch := s.Sessions
	_ = ch.SetDeadline(time.Now().Add(startReplyTimeout))
	if err := ch.Send(req, nil); err != nil {
		s.Log.Warn("asking for a session", "err", err)
		return nil, &Error{packet.ReasonServerError, "failed to start a new session"}
	}
	reply, f, _, err := ch.Recv()
	if f != nil {
		f.Close()
	}
	if err != nil {
		s.Log.Warn("asking for a session", "err", err)
		return nil, &Error{packet.ReasonServerError, "failed to start a new session"}
	}
	switch reply.Kind {
	case ipc.Denied:
		s.Log.Info("session refused", "reason", reply.Reason, "details", reply.Details)
		return nil, &Error{reply.Reason, joinDetails(reply.Details)}
	case ipc.SessionStarted:
	default:
		s.Log.Warn("asking for a session", "reply", reply.Kind)
		return nil, &Error{packet.ReasonServerError, "failed to start a new session"}
	}
	log := s.Log.With("display", reply.Display, "unit", reply.Unit, "session", reply.Session)
	log.Info("session starting")
	t0 := time.Now()
	path, err := s.waitLive(ctx, reply.Display, reply.Leader, time.Duration(reply.WaitMS)*time.Millisecond)
	if err != nil {
		log.Warn("session did not start", "err", err, "after", time.Since(t0).Round(time.Millisecond))
		// Tell the supervisor, which ends what it started for us.
		_ = ch.SetDeadline(time.Now().Add(40 * time.Second))
		if err := ch.Send(ipc.Message{Kind: ipc.StopSession}, nil); err == nil {
			_, f, _, _ := ch.Recv()
			if f != nil {
				f.Close()
			}
		}
		return nil, &Error{packet.ReasonServerError, "failed to start a new session: " + err.Error()}
	}
	log.Info("session live", "socket", path, "after", time.Since(t0).Round(time.Millisecond))
	return &Started{Display: reply.Display, Socket: path}, nil
}

// joinDetails makes the supervisor's details one disconnect detail.
func joinDetails(d []string) string {
	out := ""
	for i, x := range d {
		if i > 0 {
			out += ": "
		}
		out += x
	}
	return out
}

// waitLive polls the user's socket directories, as the user, until the
// display's socket answers; the session's leader exiting first means the
// session failed. xpra listens before its main loop runs: a connection
// made now is answered once the server is ready.
func (s *Finder) waitLive(ctx context.Context, display string, leader int, wait time.Duration) (string, error) {
	if wait <= 0 {
		wait = 90 * time.Second
	}
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if path, err := sockdir.Find(s.SocketDirs(), sockdir.Hostname(), display); err == nil && s.OwnSocket(path) {
			return path, nil
		}
		if leader > 0 && !processExists(leader) {
			return "", errors.New("the session ended while starting")
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no server on %s after %s", display, wait)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

// processExists: kill(pid, 0) tells a gone process (ESRCH) from one of
// another user (EPERM), without /proc, which may hide other users' ones.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
