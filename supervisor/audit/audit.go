// SPDX-License-Identifier: GPL-2.0-or-later

// Package audit is the supervisor's audit trail: one journal record per
// event an admin audits (a login, a penalty, a session or relay started
// or ended, a stop asked on the control socket), each with a stable
// MESSAGE_ID and its facts as fields, so that
//
//	journalctl MESSAGE_ID=48a6f68777f2474480d4c86cc3fe1d79 -o json
//
// lists every failed login. Only the root supervisor writes them (with
// go-systemd's journal package): events of other processes reach it over
// ipc (a relay's bytes, ipc.RelayEnded) or from logind (a session's end),
// so a record's _UID=0 and _SYSTEMD_UNIT vouch for it. A record is logged
// as any line is, through the supervisor's logger, with Event's attribute;
// Send is that logger's logging.Options.Send. packaging/README.md lists
// the ids and fields.
package audit

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/xpra-proxy/xpra-proxy/logging"
)

// MessageID identifies one kind of record, as systemd's catalog ids do:
// 128 random bits in hex, never changed once released.
type MessageID string

// The records, one id per event; fields are the attributes' keys
// upper-cased (see the Key constants).
const (
	// LoginSucceeded: a client proved who it is and its relay worker
	// started. USER, SOURCE, TRANSPORT, MODULE, UID, WORKER.
	LoginSucceeded MessageID = "e7c76f92041a4626a224dd1b14dc7f16"
	// LoginFailed: a login refused: a wrong password, an unknown user, a
	// source under penalty, a module refusing the transport. USER,
	// SOURCE, TRANSPORT, MODULE (when one judged), REASON.
	LoginFailed MessageID = "48a6f68777f2474480d4c86cc3fe1d79"
	// Penalty: a source barred after a failed login (sshd's
	// PerSourcePenalties). SOURCE, FAILURES, PENALTY_SEC, UNTIL.
	Penalty MessageID = "78e6a9b9c7ea452189571175e4138663"
	// SessionStarted: the supervisor started a session for a user.
	// USER, DISPLAY, UNIT, SESSION, MODE, WORKER.
	SessionStarted MessageID = "2148ff2b74134523ba99b9e0a842b6f4"
	// SessionEnded: logind removed a session the proxy started. USER,
	// DISPLAY, SESSION, DURATION_SEC (from logind's start time).
	SessionEnded MessageID = "e36520f02ebe432c82564c35bbd9ed00"
	// RelayStarted: a relay worker started for a logged-in client. USER,
	// SOURCE, TRANSPORT, WORKER.
	RelayStarted MessageID = "48ef22fccf124dab89e54e43aa940856"
	// RelayEnded: a relay worker ended. USER, SOURCE, TRANSPORT, WORKER,
	// DURATION_SEC, STATUS, and what the worker reported: DISPLAY,
	// REASON, BYTES_FROM_CLIENT, BYTES_FROM_SERVER.
	RelayEnded MessageID = "079f0379076d4f049bac3605b8cb47d0"
	// ControlStop: the supervisor was told to stop on its control socket
	// (xpra stop :proxy).
	ControlStop MessageID = "ca01dcf84b6041f585e1a0cbedec07c6"
)

// IDs are every record's id, for docs and tests.
var IDs = []MessageID{LoginSucceeded, LoginFailed, Penalty, SessionStarted, SessionEnded, RelayStarted, RelayEnded, ControlStop}

// The attribute keys of the records (journal fields: upper-cased).
const (
	KeyUser            = "user"
	KeySource          = "source"
	KeyTransport       = "transport"
	KeyModule          = "module"
	KeyReason          = "reason"
	KeyDisplay         = "display"
	KeyDuration        = "duration_sec"
	KeyBytesFromClient = "bytes_from_client"
	KeyBytesFromServer = "bytes_from_server"
)

// Event marks a log record as the audit record id.
func Event(id MessageID) slog.Attr { return slog.String(logging.MessageIDKey, string(id)) }

// identifier is SYSLOG_IDENTIFIER of the records, as journald names the
// service's stderr lines (after its program), so `journalctl -t` and the
// short output show both alike.
const identifier = "xpra-proxy"

// Send writes one record to the journal (a logging.SendFunc).
func Send(msg string, p logging.Priority, fields map[string]string) error {
	fields["SYSLOG_IDENTIFIER"] = identifier
	return journal.Send(msg, journal.Priority(p), fields)
}

// Seconds is a duration as DURATION_SEC has it: seconds, 3 decimals.
func Seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}
