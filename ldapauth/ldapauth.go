// SPDX-License-Identifier: GPL-2.0-or-later

// Package ldapauth is the exchange between the root supervisor and
// xpra-proxy-ldap, the helper that checks a password against an LDAP
// directory. The helper runs as a system user of its own (xpra-proxy-ldap:
// never root, never the pre-auth user), exec'd afresh for every attempt,
// confined (package sandbox, kind "ldap") before it reads a byte from the
// directory, and killed when its time is up.
//
// The supervisor connects to the directory itself (a TCP connect, no byte
// read) and passes the socket as the named descriptor "directory", so the
// helper opens nothing: no socket, no file. TLS, the certificate check and
// every BER byte the directory sends are the helper's.
//
// One request, one reply, one JSON document per datagram on the named
// descriptor "ldap" (a SOCK_SEQPACKET socketpair), each bounded:
//
//	supervisor                                      xpra-proxy-ldap (uid xpra-proxy-ldap)
//	Request{tls, server_name, ca_pem,      ──────►  TLS (LDAPS) or StartTLS on "directory",
//	        bind_dn, password, username,            certificate checked against ca_pem
//	        group_dn, want_ids, timeout_ms}         simple bind as bind_dn
//	                                                group_dn: base search for member,
//	                                                  uniqueMember or memberUid
//	                                                want_ids: uidNumber, gidNumber of bind_dn
//	                                       ◄──────  Reply{ok, reason, log, uid, gid}
//	                                                exit
//
// Reason is what the client may be shown ("authentication failed" for a
// wrong password, an unknown user and a user outside the group alike, so
// that nothing tells which); Log is for the supervisor's log only.
//
// This package is pure Go and links no LDAP code: the supervisor imports
// it. The LDAP calls are in ldapauth/ldapcheck, which only the helper
// imports.
package ldapauth

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

// Descriptor names of the helper ($XPRA_PROXY_FDS).
const (
	FdName       = "ldap"      // the request and the reply
	DirectoryFd  = "directory" // the TCP connection to the directory
	ProgramName  = "xpra-proxy-ldap"
	LibexecPath  = "/usr/libexec/xpra-proxy/" + ProgramName
	DefaultUser  = "xpra-proxy-ldap"
	DefaultPort  = 636
	StartTLSPort = 389
)

// TLS modes: LDAPS (TLS from the first byte) or StartTLS (RFC 4513 §3)
// before the bind. There is no plain mode: the bind carries the password.
const (
	TLSLDAPS    = "ldaps"
	TLSStartTLS = "starttls"
)

// Bounds. A request is a few hundred bytes plus the CA certificates.
const (
	MaxRequest  = 96 << 10
	MaxReply    = 8 << 10
	MaxCAPEM    = 64 << 10
	MaxDN       = 1024
	MaxUsername = 256
	MaxPassword = 1024
	MaxHost     = 253 // a DNS name
	MaxReason   = 1024
	MaxLog      = 2048
	// MaxID is the largest uid or gid: (uid_t)-1 means "none".
	MaxID = 1<<32 - 2
	// MaxTimeoutMS bounds the helper's own deadline (the module's timeout
	// is at most 5 minutes).
	MaxTimeoutMS = 5 * 60 * 1000
)

// Client-facing reasons.
const (
	ReasonFailed      = "authentication failed"
	ReasonUnavailable = "the directory is unavailable"
	ReasonTimeout     = "authentication timed out"
)

// Request is what the supervisor asks the helper.
type Request struct {
	TLS        string `json:"tls"`         // TLSLDAPS or TLSStartTLS
	ServerName string `json:"server_name"` // the name the certificate must carry
	// CAPEM are the certificates the directory's must chain to (the
	// module's cacert= file, read by root); empty: the system's roots.
	CAPEM    []byte `json:"ca_pem,omitempty"`
	BindDN   string `json:"bind_dn"`
	Password []byte `json:"password"` // bytes: already in the module's encoding
	Username string `json:"username"` // the client's name, for memberUid
	// GroupDN, when set, is a group the user must be a member of.
	GroupDN string `json:"group_dn,omitempty"`
	// WantIDs asks for the entry's uidNumber and gidNumber.
	WantIDs   bool  `json:"want_ids,omitempty"`
	TimeoutMS int64 `json:"timeout_ms"`
}

// Reply is what the helper answers.
type Reply struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"` // may be shown to the client
	Log    string `json:"log,omitempty"`    // for the supervisor's log only
	// UID and GID are the entry's uidNumber and gidNumber when asked
	// (WantIDs) and OK; -1 otherwise.
	UID int64 `json:"uid"`
	GID int64 `json:"gid"`
}

// Check validates a request: bounded, and nothing a DN or the helper
// cannot carry.
func (r *Request) Check() error {
	switch {
	case r.TLS != TLSLDAPS && r.TLS != TLSStartTLS:
		return fmt.Errorf("ldapauth: tls mode %q (want %s or %s)", r.TLS, TLSLDAPS, TLSStartTLS)
	case r.ServerName == "" || len(r.ServerName) > MaxHost || !printable(r.ServerName) || strings.ContainsAny(r.ServerName, " /"):
		return fmt.Errorf("ldapauth: invalid server name %q", r.ServerName)
	case len(r.CAPEM) > MaxCAPEM:
		return fmt.Errorf("ldapauth: CA certificates of %d bytes (at most %d)", len(r.CAPEM), MaxCAPEM)
	case r.BindDN == "" || len(r.BindDN) > MaxDN || !printable(r.BindDN):
		return errors.New("ldapauth: invalid bind DN")
	case len(r.Password) == 0 || len(r.Password) > MaxPassword:
		// An empty password is an unauthenticated bind (RFC 4513 §5.1.2),
		// which succeeds without proving anything: never sent.
		return fmt.Errorf("ldapauth: password of %d bytes (1 to %d)", len(r.Password), MaxPassword)
	case r.Username == "" || len(r.Username) > MaxUsername || !printable(r.Username):
		return errors.New("ldapauth: invalid username")
	case len(r.GroupDN) > MaxDN || !printable(r.GroupDN):
		return errors.New("ldapauth: invalid group DN")
	case r.TimeoutMS <= 0 || r.TimeoutMS > MaxTimeoutMS:
		return fmt.Errorf("ldapauth: timeout of %d ms", r.TimeoutMS)
	}
	return nil
}

// Check validates a reply: bounded, and complete when it says ok.
func (r *Reply) Check() error {
	switch {
	case len(r.Reason) > MaxReason || !utf8.ValidString(r.Reason):
		return errors.New("ldapauth: reply reason too long or not UTF-8")
	case len(r.Log) > MaxLog || !utf8.ValidString(r.Log):
		return errors.New("ldapauth: reply log too long or not UTF-8")
	case r.UID < -1 || r.UID > MaxID || r.GID < -1 || r.GID > MaxID:
		return fmt.Errorf("ldapauth: uid %d gid %d out of range", r.UID, r.GID)
	case (r.UID == -1) != (r.GID == -1):
		return errors.New("ldapauth: reply with a uid but no gid, or the reverse")
	}
	if r.OK {
		if r.Reason != "" {
			return errors.New("ldapauth: ok reply with a failure reason")
		}
	} else {
		if r.Reason == "" {
			return errors.New("ldapauth: failure reply without a reason")
		}
		if r.UID != -1 {
			return errors.New("ldapauth: failure reply with ids")
		}
	}
	return nil
}

// printable: valid UTF-8 without control characters (nothing that could
// forge a log line or end a C string).
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
		return fmt.Errorf("ldapauth: message of %d bytes exceeds %d", len(b), limit)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("ldapauth: decoding: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("ldapauth: trailing data after the message")
	}
	return nil
}

// ParseRequest decodes and validates a request (the helper's side).
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

// ParseReply decodes and validates a reply (root's side: the helper reads
// the directory's bytes, so what it says is untrusted here).
func ParseReply(b []byte) (Reply, error) {
	// Ids are -1 unless the reply names them.
	r := Reply{UID: -1, GID: -1}
	if err := decode(b, MaxReply, &r); err != nil {
		return Reply{}, err
	}
	if err := r.Check(); err != nil {
		return Reply{}, err
	}
	return r, nil
}

// Clip shortens s to at most n bytes on a rune boundary, replacing
// control characters by spaces and invalid UTF-8 by U+FFFD: a directory's
// messages go to logs.
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
		return nil, fmt.Errorf("ldapauth: %w", err)
	}
	return &Conn{c: c}, nil
}

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }

func (c *Conn) send(v any, limit int) error {
	if err := c.c.Send(v, limit); err != nil {
		return fmt.Errorf("ldapauth: %w", err)
	}
	return nil
}

func (c *Conn) recv(limit int) ([]byte, error) {
	b, err := c.c.Recv(limit)
	if err != nil {
		return nil, fmt.Errorf("ldapauth: %w", err)
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

// SendReply sends the reply, clipping what the directory said so it
// always fits.
func (c *Conn) SendReply(r Reply) error {
	r.Reason = Clip(r.Reason, MaxReason)
	r.Log = Clip(r.Log, MaxLog)
	if err := r.Check(); err != nil {
		return err
	}
	return c.send(r, MaxReply)
}
