// SPDX-License-Identifier: GPL-2.0-or-later

// Package ipc is the typed channel between the supervisor (root) and a
// pre-auth process: one SOCK_SEQPACKET socketpair per connection, one JSON
// message per datagram, bounded in size, with the sender's credentials
// attached by the kernel and checked by the supervisor.
//
// A pre-auth process is started before its connection arrives (a warm
// spare, so that exec and the Go runtime's start-up are not paid while a
// client waits). The supervisor hands it the accepted connection:
//
//	Connection {peer} + the client socket   (supervisor → pre-auth; what
//	                        follows is the pre-auth process's answer:
//	                        AuthBegin, or the channel closing after a
//	                        version request or a bad client)
//	Connection {peer, proxied} + the socket  the TCP peer is in
//	                        proxy-protocol-from: a PROXY protocol header
//	                        (v1 or v2) must come first, and its source is
//	                        asked about before anything else:
//
//	ProxyHeader {peer}   the client's address as the header claims it
//	                     ("host:port"; the TCP peer's own for a LOCAL or
//	                     UNKNOWN header, e.g. a health check)
//	    → ProxyAccepted {}          the supervisor took that source: its
//	                                per-source limits and penalties admit it
//	    → Denied {reason, details}  refused (reason: the one line a
//	                                penalised xpra client is shown, or
//	                                the limit's name); the pre-auth
//	                                process ends the connection
//
// Then every exchange is a request from the pre-auth process and one reply:
//
//	AuthBegin  {username, display, digests, salt-digests, transport}
//	    → Challenge {salt, digest, salt-digest, prompt}   answer it
//	    → NoChallenge {}                                   no password needed
//	    → Denied {reason, details}                         tell the client, stop
//	AuthVerify {response, client-salt} + handover memfd
//	    → Accepted {worker}     the relay worker took the connection over
//	    → Accepted {worker} + stream socket   (TLS or WebSocket: the pre-auth
//	                            process stays, terminating the transport, and
//	                            relays the plain xpra stream to the worker)
//	    → Denied {reason}
//
// The control process (the supervisor's own control socket, served as the
// xpra-proxy user) asks:
//
//	Status {}  → StatusReply {status}   figures for `xpra info`
//	Stop   {}  → Stopping {}            `xpra stop` by root: the supervisor exits
//
// The metrics process (xpra-proxy-metrics, metrics-bind: Prometheus)
// asks, over a channel of its own, at most once a second:
//
//	Metrics {}  → MetricsReply {stats}   the supervisor's counters, a
//	                                     stats.Snapshot as JSON; the
//	                                     metrics process checks and serves it
//
// A relay worker may ask for a session to be started for its user (sessions
// on demand), over a channel of its own ("session"), served by the
// supervisor in a goroutine of that relay; at most one start per relay:
//
//	StartSession {mode, display, options}   mode "start" or "start-desktop";
//	                                        display ":N" or "" for any free one;
//	                                        options: the client's overrides,
//	                                        option name → values, checked by the
//	                                        supervisor against its allowlist
//	    → SessionStarted {display, unit, session, leader, wait-ms}
//	                            logind has registered the session; the relay
//	                            waits up to wait-ms for its socket, and gives
//	                            up early once the leader pid has gone
//	    → Denied {reason, details}
//	StopSession {}  → SessionStopped {}   the relay gave up waiting: the
//	                                        supervisor ends the session it started
//
// Every relay worker also has a channel of its own ("report") on which it
// says, as it ends, what its connection did; nothing answers it, since the
// worker exits next: the supervisor reads it when it reaps the worker and
// writes the relay-ended audit record (supervisor/audit), so that record
// comes from root, with the bytes only the worker counts:
//
//	RelayEnded {display, reason, figures: bytes_from_client,
//	            bytes_from_server}            (no reply)
//
// A warm relay worker (child.EarlyRelay: exec'd ahead of its login) waits
// on a channel of its own ("start") for what a relay otherwise gets at
// exec, sent by the supervisor once a login is granted its identity, one
// descriptor per message, in this order:
//
//	RelayFile {name: "client"}   + the client socket (or the stream
//	                               socket of a TLS/WebSocket transport)
//	RelayFile {name: "handover"} + the handover memfd
//	RelayFile {name: "launch"}   + the launch memfd
//	                               (no reply: the worker now runs as a
//	                               relay; its report channel says how it
//	                               ended)
//
// A warm relay that is not needed has its start channel closed instead,
// and exits.
//
// The handover memfd holds the client's hello and negotiated state; the
// supervisor passes it to the relay worker without reading it.
//
// The directory helper (xpra-proxy-directory, shared directory in
// PostgreSQL) has a protocol of its own, in package pgdir (proto.go): a
// stream socketpair of length-prefixed JSON frames, requests with ids so
// that calls run concurrently, one reply each (ping, user-rows, users,
// add-user, remove-user, set-user, place, session-live, session-ended,
// sessions, sessions-running, add-failure, clear-penalty, penalties,
// publish-penalties, add-relay, remove-relay, other-relays, sync-relays,
// and listen, a long poll for penalty notes). It does not link this
// package.
package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Message kinds.
const (
	Connection    = "connection"
	ProxyHeader   = "proxy-header"
	ProxyAccepted = "proxy-accepted"
	AuthBegin     = "auth-begin"
	Challenge     = "challenge"
	NoChallenge   = "no-challenge"
	Denied        = "denied"
	AuthVerify    = "auth-verify"
	Accepted      = "accepted"
	Status        = "status"
	StatusReply   = "status-reply"
	Stop          = "stop"
	Stopping      = "stopping"

	Metrics      = "metrics"
	MetricsReply = "metrics-reply"

	StartSession   = "start-session"
	SessionStarted = "session-started"
	StopSession    = "stop-session"
	SessionStopped = "session-stopped"

	RelayEnded = "relay-ended"

	RelayFile = "relay-file"
)

// RelayEnded's figures.
const (
	FigureBytesFromClient = "bytes_from_client"
	FigureBytesFromServer = "bytes_from_server"
)

// MaxMessage bounds one datagram; a message is a few hundred bytes.
const MaxMessage = 64 << 10

// Message is every field any message uses; Kind says which are set.
type Message struct {
	Kind string `json:"kind"`

	// Connection: the client's address ("host:port", "unix:PATH"), for
	// logs; ProxyHeader: the address a PROXY protocol header claims
	Peer string `json:"peer,omitempty"`
	// Connection: the peer is a trusted load balancer (proxy-protocol-from):
	// read its PROXY protocol header first
	Proxied bool `json:"proxied,omitempty"`

	// AuthBegin
	Username    string   `json:"username,omitempty"`
	Display     string   `json:"display,omitempty"`
	Digests     []string `json:"digests,omitempty"`
	SaltDigests []string `json:"salt_digests,omitempty"`
	// Transport is what arrived on the listener: "tcp", "ssl", "ws" or
	// "wss" on TCP listeners, "unix" on unix sockets. It picks the auth
	// modules (--ssl-auth, --ws-auth, ...).
	Transport string `json:"transport,omitempty"`

	// Challenge
	Salt       []byte `json:"salt,omitempty"`
	Digest     string `json:"digest,omitempty"`
	SaltDigest string `json:"salt_digest,omitempty"`
	Prompt     string `json:"prompt,omitempty"`

	// AuthVerify
	Response   []byte `json:"response,omitempty"`
	ClientSalt []byte `json:"client_salt,omitempty"`

	// Denied: the disconnect reason and details the client is shown;
	// RelayEnded: why the relay ended
	Reason  string   `json:"reason,omitempty"`
	Details []string `json:"details,omitempty"`

	// Accepted
	Worker int `json:"worker,omitempty"`

	// RelayFile: which descriptor is attached
	Name string `json:"name,omitempty"`

	// StatusReply: counters by name; RelayEnded: its bytes
	Figures map[string]int64 `json:"figures,omitempty"`

	// MetricsReply: a stats.Snapshot (kept as bytes here, so that every
	// process linking ipc need not link stats)
	Stats json.RawMessage `json:"stats,omitempty"`

	// StartSession (and Display, above: the one asked for, or the one
	// started in SessionStarted)
	Mode    string              `json:"mode,omitempty"`
	Options map[string][]string `json:"options,omitempty"`

	// SessionStarted
	Unit    string `json:"unit,omitempty"`    // the session's transient unit
	Session string `json:"session,omitempty"` // logind's session id
	Leader  int    `json:"leader,omitempty"`  // pid of the session's leader
	WaitMS  int64  `json:"wait_ms,omitempty"` // how long the socket may take to appear
}

// Conn is one end of the channel.
type Conn struct {
	c *net.UnixConn
}

// Pair makes a connected pair: the supervisor's end (receiving the
// sender's credentials) and the child's end as a file to pass on.
func Pair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("ipc: socketpair: %w", err)
	}
	if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("ipc: SO_PASSCRED: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "ipc")
	defer parent.Close()
	c, err := FromFile(parent)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c, os.NewFile(uintptr(fds[1]), "ipc"), nil
}

// FromFile wraps an inherited end (the file may be closed afterwards).
func FromFile(f *os.File) (*Conn, error) {
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("ipc: %w", err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("ipc: %s is not a unix socket", f.Name())
	}
	return &Conn{c: uc}, nil
}

// SetDeadline bounds the next Send and Recv calls (zero: no bound).
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }

// Send sends m, with at most one file attached.
func (c *Conn) Send(m Message, file *os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("ipc: encoding %s: %w", m.Kind, err)
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("ipc: %s message of %d bytes exceeds %d", m.Kind, len(b), MaxMessage)
	}
	var oob []byte
	if file != nil {
		oob = unix.UnixRights(int(file.Fd()))
	}
	if _, _, err := c.c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("ipc: sending %s: %w", m.Kind, err)
	}
	return nil
}

// Peer is who sent a message, as the kernel saw it.
type Peer struct {
	Pid      int32
	UID, GID uint32
	Known    bool // credentials were attached (the receiving end asked for them)
}

// ErrClosed means the other end went away.
var ErrClosed = errors.New("ipc: peer closed the channel")

// Recv reads one message and the file attached to it, if any.
func (c *Conn) Recv() (Message, *os.File, Peer, error) {
	buf := make([]byte, MaxMessage+1)
	oob := make([]byte, unix.CmsgSpace(4)+unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	if errors.Is(err, io.EOF) {
		return Message{}, nil, Peer{}, ErrClosed
	}
	if err != nil {
		return Message{}, nil, Peer{}, fmt.Errorf("ipc: receiving: %w", err)
	}
	var file *os.File
	var peer Peer
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return Message{}, nil, peer, fmt.Errorf("ipc: control message: %w", err)
		}
		for _, cm := range msgs {
			if fds, err := unix.ParseUnixRights(&cm); err == nil {
				for i, fd := range fds {
					if i == 0 && file == nil {
						unix.CloseOnExec(fd)
						file = os.NewFile(uintptr(fd), "ipc-attachment")
					} else {
						unix.Close(fd) // one file per message: drop extras
					}
				}
			} else if cred, err := unix.ParseUnixCredentials(&cm); err == nil {
				peer = Peer{Pid: cred.Pid, UID: cred.Uid, GID: cred.Gid, Known: true}
			}
		}
	}
	if n == 0 && flags == 0 {
		if file != nil {
			file.Close()
		}
		return Message{}, nil, peer, ErrClosed
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > MaxMessage {
		if file != nil {
			file.Close()
		}
		return Message{}, nil, peer, fmt.Errorf("ipc: message truncated (over %d bytes or too many descriptors)", MaxMessage)
	}
	var m Message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		if file != nil {
			file.Close()
		}
		return Message{}, nil, peer, fmt.Errorf("ipc: decoding message: %w", err)
	}
	return m, file, peer, nil
}

// RelayFileNames are the descriptors an early relay gets on its start
// channel, in the order they are sent.
var RelayFileNames = []string{"client", "handover", "launch"}

// SendRelayFiles gives a waiting early relay its descriptors, by name
// (every one of RelayFileNames).
func (c *Conn) SendRelayFiles(files map[string]*os.File) error {
	for _, name := range RelayFileNames {
		f := files[name]
		if f == nil {
			return fmt.Errorf("ipc: relay file %q missing", name)
		}
		if err := c.Send(Message{Kind: RelayFile, Name: name}, f); err != nil {
			return err
		}
	}
	return nil
}

// RecvRelayFiles is the early relay's side: it waits for its descriptors
// and refuses anything but RelayFileNames in order, each with a
// descriptor. ErrClosed: the supervisor gave up on it (or ended).
func (c *Conn) RecvRelayFiles() (map[string]*os.File, error) {
	files := map[string]*os.File{}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, name := range RelayFileNames {
		m, f, _, err := c.Recv()
		if err != nil {
			closeAll()
			return nil, err
		}
		if m.Kind != RelayFile || m.Name != name || f == nil {
			if f != nil {
				f.Close()
			}
			closeAll()
			return nil, fmt.Errorf("ipc: start channel: got %s %q (descriptor %v), want %s %q with a descriptor", m.Kind, m.Name, f != nil, RelayFile, name)
		}
		files[name] = f
	}
	return files, nil
}
