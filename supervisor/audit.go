// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/stats"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
)

// The supervisor's audit records (package audit) that take more than one
// line to write. Each is a log record with audit.Event's attribute: the
// logger's handler sends it to the journal with its fields.

// loginFailed logs the record of a refused login; module: the one that
// judged, if any. x.log carries the peer, the listener and, once known,
// the transport.
func (x *exchange) loginFailed(msg, user, module string, err error) {
	args := []any{audit.Event(audit.LoginFailed), audit.KeyUser, user, audit.KeySource, source(x.peer)}
	if x.transport == "" { // not yet in x.log: what the listener takes
		args = append(args, audit.KeyTransport, x.typ)
	}
	if module != "" {
		args = append(args, audit.KeyModule, module)
	}
	x.log.Warn(msg, append(args, audit.KeyReason, err.Error())...)
}

// moduleName is the name of the module that asked for a password, if any.
func moduleName(m auth.Module) string {
	if m == nil {
		return ""
	}
	return m.Name()
}

// penalize records a failed login from src (limits.Failed) and logs the
// record of the penalty it brings, if any.
func (s *Supervisor) penalize(log *slog.Logger, src netip.Addr) {
	until, failures := s.limits.Failed(src)
	if until.IsZero() {
		return
	}
	s.sharePenalty(src, failures, until)
	log.Warn("source penalized", audit.Event(audit.Penalty), audit.KeySource, src.String(),
		"failures", failures, "penalty_sec", audit.Seconds(time.Until(until)), "until", until.UTC().Format(time.RFC3339))
}

// source is a peer's address without the port (TCP), else the peer as
// handle names it (unix:PATH).
func source(peer string) string {
	if a := peerAddr(peer); a.IsValid() {
		return a.String()
	}
	return peer
}

// relayEnded logs the record of a reaped relay worker (who: its
// attributes, as its start's record has them), with what it
// reported on its channel: its bytes, display and reason. A worker that
// was killed says nothing; then the record has the exit status alone. The
// worker is gone, so its message, if sent, waits in the socket and the
// read does not block (the deadline is a guard). The bytes are counted
// into st for Prometheus: a killed worker's are not known, so not counted.
func relayEnded(log *slog.Logger, st *stats.Stats, who []any, report *ipc.Conn, pid int, uid uint32, took time.Duration, status error) {
	defer report.Close()
	args := append(who, audit.Event(audit.RelayEnded), audit.KeyDuration, audit.Seconds(took))
	if status != nil {
		args = append(args, "status", status.Error())
	}
	if m, err := readReport(report, pid, uid); err == nil {
		if m.Display != "" { // none chosen: refused before, or answered itself
			args = append(args, audit.KeyDisplay, clip(m.Display, 64))
		}
		if m.Reason != "" {
			args = append(args, audit.KeyReason, clip(m.Reason, 256))
		}
		fromClient, fromServer := max(m.Figures[ipc.FigureBytesFromClient], 0), max(m.Figures[ipc.FigureBytesFromServer], 0)
		args = append(args, audit.KeyBytesFromClient, fromClient, audit.KeyBytesFromServer, fromServer)
		st.RelayBytes(fromClient, fromServer)
	} else if !errors.Is(err, ipc.ErrClosed) {
		log.Warn("relay report", "err", err)
	}
	log.Info("relay worker ended", args...)
}

// readReport reads a relay's RelayEnded, checking it came from the
// worker, as its user (a user's process, so only bounded values are used).
func readReport(c *ipc.Conn, pid int, uid uint32) (ipc.Message, error) {
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return ipc.Message{}, err
	}
	m, f, peer, err := c.Recv()
	if f != nil {
		f.Close()
		return ipc.Message{}, errors.New("a descriptor with the report")
	}
	if err != nil {
		return ipc.Message{}, err
	}
	if !peer.Known || int(peer.Pid) != pid || peer.UID != uid {
		return ipc.Message{}, fmt.Errorf("report from pid %d uid %d, expected pid %d uid %d", peer.Pid, peer.UID, pid, uid)
	}
	if m.Kind != ipc.RelayEnded {
		return ipc.Message{}, fmt.Errorf("report of kind %q", m.Kind)
	}
	return m, nil
}

// clip makes a worker's string fit a record: valid UTF-8, control
// characters as '?', at most n bytes.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
