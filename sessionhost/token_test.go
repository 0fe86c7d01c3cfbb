// SPDX-License-Identifier: GPL-2.0-or-later

package sessionhost

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

func TestToken(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_030, 0) // minute 30000000, 30 s in
	made := Token(key, "h1", "alice", Minute(now))
	// The documented construction, computed independently.
	m := hmac.New(sha256.New, key)
	m.Write([]byte("xpra-proxy session-host v1\x00h1\x00alice\x0030000000"))
	if want := hex.EncodeToString(m.Sum(nil)); made != want {
		t.Fatalf("Token = %s, want %s", made, want)
	}
	tests := []struct {
		name      string
		key       []byte
		host      string
		user      string
		at        time.Time
		wantValid bool
	}{
		{"same minute", key, "h1", "alice", now, true},
		{"next minute", key, "h1", "alice", now.Add(time.Minute), true},
		{"two minutes on", key, "h1", "alice", now.Add(2 * time.Minute), false},
		{"a minute before it was made", key, "h1", "alice", now.Add(-time.Minute), false},
		{"another user", key, "h1", "bob", now, false},
		{"user with the host's suffix", key, "h1", "alice\x00", now, false},
		{"another host", key, "h2", "alice", now, false},
		{"another key", []byte("fedcba9876543210fedcba9876543210"), "h1", "alice", now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := false
			for _, c := range Accepted(tt.key, tt.host, tt.user, tt.at) {
				if hmac.Equal(c, []byte(made)) {
					got = true
				}
			}
			if got != tt.wantValid {
				t.Errorf("accepted = %v, want %v", got, tt.wantValid)
			}
		})
	}
}

func TestCheckKey(t *testing.T) {
	for _, tt := range []struct {
		key string
		ok  bool
	}{{"", false}, {"short", false}, {"0123456789abcde", false}, {"0123456789abcdef", true}} {
		if err := CheckKey([]byte(tt.key)); (err == nil) != tt.ok {
			t.Errorf("CheckKey(%q) = %v, want ok %v", tt.key, err, tt.ok)
		}
	}
}
