// SPDX-License-Identifier: GPL-2.0-or-later

// Package pamauth is the exchange between the root supervisor and
// xpra-proxy-pam, the helper that runs the PAM conversation. PAM
// misbehaves inside multi-threaded processes (STYLE.md §0.2), so the
// supervisor never links libpam: it execs the helper afresh for every
// attempt, with a clean environment and one named descriptor, "pam" (a
// SOCK_SEQPACKET socketpair), and kills it when its time is up.
//
// One request, one reply, one JSON document per datagram, each bounded:
//
//	supervisor                                      xpra-proxy-pam (root, main thread locked)
//	Request{service, username, password,   ──────►  pam_start(service, username)
//	        rhost, tty}                             PAM_RHOST, PAM_TTY
//	                                                pam_authenticate: the first echo-off prompt
//	                                                  gets the password, any other prompt fails
//	                                                pam_acct_mgmt: expired, nologin, ...
//	                                       ◄──────  Reply{ok, reason, log, user, uid, gid, home}
//	                                                exit
//
// Reason is what the client may be shown ("authentication failed",
// "account expired", ...); Log is for the supervisor's log only. The
// helper opens no session: that belongs to the session's own unit.
//
// This package is pure Go: the supervisor imports it. The PAM calls are in
// pamauth/pamcheck, which only the helper imports.
package pamauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/xpra-proxy/xpra-proxy/authhelper"
)

// FdName is the name of the helper's one descriptor ($XPRA_PROXY_FDS).
const FdName = "pam"

// Bounds. A request is a few hundred bytes; these leave room for the
// largest fields, escaped, without letting either side make the other
// allocate much.
const (
	MaxRequest  = 8 << 10
	MaxReply    = 16 << 10
	MaxService  = 64
	MaxUsername = 256  // LOGIN_NAME_MAX
	MaxPassword = 511  // PAM_MAX_RESP_SIZE less the NUL
	MaxRHost    = 1025 // NI_MAXHOST
	MaxTTY      = 64
	MaxReason   = 1024 // what a client is shown
	MaxLog      = 2048
	MaxHome     = 4096 // PATH_MAX
	// MaxID is the largest uid or gid: (uid_t)-1 means "none".
	MaxID = 1<<32 - 2
)

// DefaultService is the PAM service name: /etc/pam.d/xpra-proxy.
const DefaultService = "xpra-proxy"

// Client-facing reasons. Anything else the helper says comes after one of
// these and a colon.
const (
	ReasonFailed         = "authentication failed"
	ReasonExpired        = "account expired"
	ReasonPasswordChange = "password change required"
	ReasonPasswordExpiry = "password expired"
	ReasonNologin        = "logins disabled (nologin)"
	ReasonRefused        = "account refused"
	ReasonMorePrompts    = "PAM asked for more than a password"
	ReasonTimeout        = "authentication timed out"
)

// Request is what the supervisor asks the helper.
type Request struct {
	Service  string `json:"service"`
	Username string `json:"username"`
	// Password is bytes, not a string: a client may send any bytes, and
	// JSON would silently replace invalid UTF-8.
	Password []byte `json:"password"`
	RHost    string `json:"rhost,omitempty"` // the client's address, for PAM_RHOST
	TTY      string `json:"tty,omitempty"`   // PAM_TTY, when there is one
}

// Reply is what the helper answers.
type Reply struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"` // may be shown to the client
	Log    string `json:"log,omitempty"`    // for the supervisor's log only
	// The account PAM authenticated (PAM_USER after the conversation: a
	// module may have mapped the name) and its passwd entry.
	User string `json:"user,omitempty"`
	UID  int64  `json:"uid"`
	GID  int64  `json:"gid"`
	Home string `json:"home,omitempty"`
}

// ValidService reports whether name can be a PAM service: a plain file
// name under /etc/pam.d.
func ValidService(name string) bool {
	if name == "" || len(name) > MaxService || name[0] == '.' {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Check validates a request: bounded, and nothing a C string cannot carry.
func (r *Request) Check() error {
	switch {
	case !ValidService(r.Service):
		return fmt.Errorf("pamauth: invalid service name %q", r.Service)
	case r.Username == "" || len(r.Username) > MaxUsername:
		return fmt.Errorf("pamauth: username of %d bytes", len(r.Username))
	case !printable(r.Username):
		return errors.New("pamauth: username with control characters or invalid UTF-8")
	case len(r.Password) == 0 || len(r.Password) > MaxPassword:
		return fmt.Errorf("pamauth: password of %d bytes (1 to %d)", len(r.Password), MaxPassword)
	case bytes.IndexByte(r.Password, 0) >= 0:
		return errors.New("pamauth: password with a NUL byte")
	case len(r.RHost) > MaxRHost || !printable(r.RHost):
		return errors.New("pamauth: invalid rhost")
	case len(r.TTY) > MaxTTY || !printable(r.TTY):
		return errors.New("pamauth: invalid tty")
	}
	return nil
}

// Check validates a reply: bounded, and complete when it says ok.
func (r *Reply) Check() error {
	switch {
	case len(r.Reason) > MaxReason || !utf8.ValidString(r.Reason):
		return errors.New("pamauth: reply reason too long or not UTF-8")
	case len(r.Log) > MaxLog || !utf8.ValidString(r.Log):
		return errors.New("pamauth: reply log too long or not UTF-8")
	case len(r.User) > MaxUsername || !printable(r.User):
		return errors.New("pamauth: invalid user in reply")
	case len(r.Home) > MaxHome || strings.IndexByte(r.Home, 0) >= 0:
		return errors.New("pamauth: invalid home in reply")
	case r.UID < 0 || r.UID > MaxID || r.GID < 0 || r.GID > MaxID:
		return fmt.Errorf("pamauth: uid %d gid %d out of range", r.UID, r.GID)
	}
	if r.OK {
		if r.User == "" {
			return errors.New("pamauth: ok reply without a user")
		}
		if r.Reason != "" {
			return errors.New("pamauth: ok reply with a failure reason")
		}
	} else if r.Reason == "" {
		return errors.New("pamauth: failure reply without a reason")
	}
	return nil
}

// printable: valid UTF-8 without control characters (a username or a
// host name that could forge log lines or terminal output is refused).
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// decode parses exactly one JSON document of at most limit bytes into v,
// refusing fields v does not have.
func decode(b []byte, limit int, v any) error {
	if len(b) > limit {
		return fmt.Errorf("pamauth: message of %d bytes exceeds %d", len(b), limit)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("pamauth: decoding: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("pamauth: trailing data after the message")
	}
	return nil
}

// ParseRequest decodes and validates a request.
func ParseRequest(b []byte) (Request, error) {
	var r Request
	if err := decode(b, MaxRequest, &r); err != nil {
		return Request{}, err
	}
	if err := r.Check(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// ParseReply decodes and validates a reply.
func ParseReply(b []byte) (Reply, error) {
	var r Reply
	if err := decode(b, MaxReply, &r); err != nil {
		return Reply{}, err
	}
	if err := r.Check(); err != nil {
		return Reply{}, err
	}
	return r, nil
}

// Clip shortens s to at most n bytes on a rune boundary, replacing
// control characters by spaces and invalid UTF-8 by U+FFFD: PAM modules'
// messages go to clients and logs.
func Clip(s string, n int) string {
	return authhelper.Clip(s, n)
}

// Conn is one end of the helper's socketpair.
type Conn struct {
	c *authhelper.Conn
}

// NewConn wraps an end (the file may be closed afterwards).
func NewConn(f *os.File) (*Conn, error) {
	c, err := authhelper.NewConn(f)
	if err != nil {
		return nil, fmt.Errorf("pamauth: %w", err)
	}
	return &Conn{c: c}, nil
}

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }

func (c *Conn) send(v any, limit int) error {
	if err := c.c.Send(v, limit); err != nil {
		return fmt.Errorf("pamauth: %w", err)
	}
	return nil
}

func (c *Conn) recv(limit int) ([]byte, error) {
	b, err := c.c.Recv(limit)
	if err != nil {
		return nil, fmt.Errorf("pamauth: %w", err)
	}
	return b, nil
}

// SendRequest is the supervisor's half of the exchange.
func (c *Conn) SendRequest(r Request) error {
	if err := r.Check(); err != nil {
		return err
	}
	return c.send(r, MaxRequest)
}

// RecvReply reads and validates the helper's reply.
func (c *Conn) RecvReply() (Reply, error) {
	b, err := c.recv(MaxReply)
	if err != nil {
		return Reply{}, err
	}
	return ParseReply(b)
}

// RecvRequest is the helper's half: read and validate the request.
func (c *Conn) RecvRequest() (Request, error) {
	b, err := c.recv(MaxRequest)
	if err != nil {
		return Request{}, err
	}
	return ParseRequest(b)
}

// SendReply sends the reply, clipping what PAM said so it always fits.
func (c *Conn) SendReply(r Reply) error {
	r.Reason = Clip(r.Reason, MaxReason)
	r.Log = Clip(r.Log, MaxLog)
	if err := r.Check(); err != nil {
		return err
	}
	return c.send(r, MaxReply)
}
