// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// The protocol between the supervisor (DB) and xpra-proxy-directory
// (package pgstore), on the helper's named descriptor "directory", a
// SOCK_STREAM socketpair: frames of a 4-byte big-endian length and one
// JSON document, requests at most MaxRequest bytes, replies at most
// MaxReply. A frame over its bound is a broken peer: the connection ends
// (and root restarts the helper).
//
// The first frame is Open{uri, timeout_ms, retry_ms, name}: the URI,
// password included, never goes through argv or the environment. Its
// reply says whether the URI parses. Then every request carries an id
// and gets one reply with the same id, in any order (calls run
// concurrently): Request{id, op, args} → Reply{id, err, unavailable,
// result}. Unavailable is the database's outage (ErrUnavailable), err
// alone an SQL or argument error. One op per DB method:
//
//	ping {}                                   → {}
//	user-rows {username}                      → [User]
//	users {}                                  → [User]
//	add-user User                             → {}
//	remove-user {username, password}          → {n}
//	set-user {username, column, value}        → {n}
//	place {user, hosts}                       → {host, found}
//	session-live {user, display}              → {}
//	session-ended {user, display}             → {}
//	sessions {}                               → [SessionRow]
//	sessions-running {running: [SessionRow]}  → {}
//	add-failure {source, rule: FailureRule}   → Penalty
//	clear-penalty {source}                    → {}
//	penalties {forget_ms}                     → [Penalty]
//	publish-penalties {penalties}             → {n}
//	add-relay {pid, user}                     → {}
//	remove-relay {pid}                        → {}
//	other-relays {user}                       → {n}
//	sync-relays {live: {pid: user}}           → {}
//	listen {channel, epoch, after, listening} → ListenReply
//
// listen is a long poll (at most ListenWait): the helper LISTENs on the
// channel on a connection of its own and buffers what it hears; the reply
// comes when there are notes after seq `after`, when the helper's LISTEN
// connection changed (a new epoch: root loads what it missed, then takes
// the notes), or at the end of the wait.
const (
	MaxRequest = 1 << 20
	MaxReply   = 4 << 20
	// ListenWait bounds one listen request.
	ListenWait = 30 * time.Second
	// MaxNotes bounds the notes the helper keeps for root between two
	// listen requests; past it root reloads (ListenReply.Gap).
	MaxNotes = 1024
	// MaxChannel is PostgreSQL's identifier length.
	MaxChannel = 63
)

// SchemaVersion is the newest schema the helper applies (pgstore's).
const SchemaVersion = 2

// Ops.
const (
	OpOpen             = "open"
	OpPing             = "ping"
	OpUserRows         = "user-rows"
	OpUsers            = "users"
	OpAddUser          = "add-user"
	OpRemoveUser       = "remove-user"
	OpSetUser          = "set-user"
	OpPlace            = "place"
	OpSessionLive      = "session-live"
	OpSessionEnded     = "session-ended"
	OpSessions         = "sessions"
	OpSessionsRunning  = "sessions-running"
	OpAddFailure       = "add-failure"
	OpClearPenalty     = "clear-penalty"
	OpPenalties        = "penalties"
	OpPublishPenalties = "publish-penalties"
	OpAddRelay         = "add-relay"
	OpRemoveRelay      = "remove-relay"
	OpOtherRelays      = "other-relays"
	OpSyncRelays       = "sync-relays"
	OpListen           = "listen"
)

// Request is one call.
type Request struct {
	ID   uint64          `json:"id"`
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Reply is one call's answer.
type Reply struct {
	ID          uint64          `json:"id"`
	Err         string          `json:"err,omitempty"`
	Unavailable bool            `json:"unavailable,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
}

// OpenArgs is the first frame.
type OpenArgs struct {
	URI       string `json:"uri"`
	TimeoutMS int64  `json:"timeout_ms"`
	RetryMS   int64  `json:"retry_ms"`
	Name      string `json:"name"`
}

// Arguments and results of the ops.
type (
	UserArgs struct {
		Username string `json:"username"`
		Password string `json:"password,omitempty"`
		Column   string `json:"column,omitempty"`
		Value    string `json:"value,omitempty"`
	}
	Count     struct{ N int64 }
	PlaceArgs struct {
		User  string   `json:"user"`
		Hosts []string `json:"hosts"`
	}
	PlaceResult struct {
		Host  string `json:"host"`
		Found bool   `json:"found"`
	}
	SessionArgs struct {
		User    string `json:"user"`
		Display string `json:"display"`
	}
	RunningArgs struct{ Running []SessionRow }
	FailureArgs struct {
		Source string      `json:"source"`
		Rule   FailureRule `json:"rule"`
	}
	SourceArgs    struct{ Source string }
	PenaltiesArgs struct {
		ForgetMS int64 `json:"forget_ms"`
	}
	PublishArgs struct{ Penalties []Penalty }
	RelayArgs   struct {
		PID  int    `json:"pid"`
		User string `json:"user"`
	}
	SyncArgs   struct{ Live map[int]string }
	ListenArgs struct {
		Channel   string `json:"channel"`
		Epoch     string `json:"epoch"`
		After     uint64 `json:"after"`
		Listening bool   `json:"listening"`
	}
	ListenReply struct {
		Listening bool     `json:"listening"`
		Err       string   `json:"err,omitempty"` // why not
		Epoch     string   `json:"epoch"`         // the LISTEN connection's; a new one: reload
		Seq       uint64   `json:"seq"`           // the last note's
		Gap       bool     `json:"gap,omitempty"` // notes were dropped: reload
		Notes     []string `json:"notes,omitempty"`
	}
)

// WriteFrame writes v as one frame of at most limit bytes.
func WriteFrame(w io.Writer, v any, limit int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("pgdir: encoding: %w", err)
	}
	if len(b) > limit {
		return fmt.Errorf("pgdir: message of %d bytes exceeds %d", len(b), limit)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("pgdir: sending: %w", err)
	}
	return nil
}

// ErrFrameTooLarge is ReadFrame's error for a frame over its bound.
var ErrFrameTooLarge = errors.New("pgdir: frame over its bound")

// ReadFrame reads one frame of at most limit bytes.
func ReadFrame(r *bufio.Reader, limit int) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("pgdir: a cut frame: %w", err)
	}
	return b, nil
}

// DecodeReply reads one reply frame: what root parses of the helper's
// bytes.
func DecodeReply(r *bufio.Reader) (Reply, error) {
	b, err := ReadFrame(r, MaxReply)
	if err != nil {
		return Reply{}, err
	}
	var rep Reply
	if err := json.Unmarshal(b, &rep); err != nil {
		return Reply{}, fmt.Errorf("pgdir: a reply that does not parse: %w", err)
	}
	return rep, nil
}

// remoteErr is an error the helper reported, with its text.
type remoteErr struct {
	msg         string
	unavailable bool
}

func (e *remoteErr) Error() string { return e.msg }

func (e *remoteErr) Is(target error) bool { return e.unavailable && target == ErrUnavailable }

// ReplyError is the error a reply carries (nil: none).
func ReplyError(r Reply) error {
	if r.Err == "" && !r.Unavailable {
		return nil
	}
	msg := r.Err
	if msg == "" {
		msg = ErrUnavailable.Error()
	}
	return &remoteErr{msg: msg, unavailable: r.Unavailable}
}
