// SPDX-License-Identifier: GPL-2.0-or-later

// Package sessionhost is the credential a front proxy gives a session
// host (issue 16): not the key the two share, but a per-login token
// derived from it for one user on one host in one minute. The front's
// relay runs as the user and would hand its password to anything it
// connects to; a token it leaks is good for that user on that host for
// two minutes at most, never for another user or host.
package sessionhost

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// label binds the HMAC to this use of the key (and its version).
const label = "xpra-proxy session-host v1\x00"

// MinKeyLen is the shortest shared key accepted: 128 bits of hex or
// base64 text take at least 16 bytes.
const MinKeyLen = 16

// ErrShortKey is the error of a key under MinKeyLen bytes.
var ErrShortKey = errors.New("the session-host key is shorter than 16 bytes")

// Minute is the token's time step of t.
func Minute(t time.Time) int64 { return t.Unix() / 60 }

// Token is the password the user's relay answers host's challenge with in
// minute: hex(HMAC-SHA256(key, label + host + NUL + user + NUL + minute)).
func Token(key []byte, host, user string, minute int64) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write([]byte(host))
	m.Write([]byte{0})
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write(strconv.AppendInt(nil, minute, 10))
	return hex.EncodeToString(m.Sum(nil))
}

// Accepted are the tokens host accepts for user at now: this minute's and
// the previous one's, so that a token made at a minute's end still works
// while the relay connects.
func Accepted(key []byte, host, user string, now time.Time) [][]byte {
	m := Minute(now)
	return [][]byte{[]byte(Token(key, host, user, m)), []byte(Token(key, host, user, m-1))}
}

// CheckKey refuses a key too short to be a secret.
func CheckKey(key []byte) error {
	if len(key) < MinKeyLen {
		return ErrShortKey
	}
	return nil
}
