// SPDX-License-Identifier: GPL-2.0-or-later

// Package authhelper holds what root shares with every helper program it
// hands a password to (pamauth's xpra-proxy-pam, ldapauth's
// xpra-proxy-ldap): finding and checking the program, the datagram
// socketpair their one request and one reply travel on, and the clipping
// of what the helper reports so it always fits its budget.
//
// Each helper package keeps its own message types and limits; this one
// only moves bounded JSON datagrams.
package authhelper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// FindProgram returns the helper called name beside the running program,
// else the packaged one at libexec.
func FindProgram(name, libexec string) string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return libexec
}

// CheckProgram refuses a helper that someone other than root (or the user
// running the supervisor) could replace: it is handed passwords.
func CheckProgram(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("helper path %q is not absolute", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("helper program: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("helper %s is not a regular file", path)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("helper %s is not executable", path)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("helper %s is writable by group or others (mode %v)", path, fi.Mode().Perm())
	case !ok || (st.Uid != 0 && int(st.Uid) != os.Geteuid()):
		return fmt.Errorf("helper %s is not owned by root", path)
	}
	return nil
}

// Clip makes s safe to log and show: valid UTF-8, no control characters,
// at most n bytes, cut on a rune boundary.
func Clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Conn is one end of a helper's SOCK_SEQPACKET (or datagram) socketpair.
type Conn struct {
	c *net.UnixConn
}

// NewConn wraps an end (the file may be closed afterwards).
func NewConn(f *os.File) (*Conn, error) {
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("%s is not a unix socket", f.Name())
	}
	return &Conn{c: uc}, nil
}

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }

// SetDeadline bounds every read and write from now on.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// Send writes v as one JSON datagram of at most limit bytes.
func (c *Conn) Send(v any, limit int) error {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false) // keeps the size at most twice the text's
	if err := e.Encode(v); err != nil {
		return fmt.Errorf("encoding: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > limit {
		return fmt.Errorf("message of %d bytes exceeds %d", len(b), limit)
	}
	if _, err := c.c.Write(b); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	return nil
}

// Recv reads one datagram of at most limit bytes; a longer one is an
// error, never silently cut.
func (c *Conn) Recv(limit int) ([]byte, error) {
	buf := make([]byte, limit+1)
	n, _, flags, _, err := c.c.ReadMsgUnix(buf, nil)
	if err != nil {
		return nil, fmt.Errorf("receiving: %w", err)
	}
	if n == 0 && flags == 0 {
		return nil, errors.New("the other end closed without a message")
	}
	if n > limit || flags&unix.MSG_TRUNC != 0 {
		return nil, fmt.Errorf("message over %d bytes", limit)
	}
	return buf[:n], nil
}

// Write sends b as it is, unchecked: for tests of the other end's bounds.
func (c *Conn) Write(b []byte) (int, error) { return c.c.Write(b) }
