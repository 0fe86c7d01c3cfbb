// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/sessionhost"
)

func TestSessionHost(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	key := "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok := func(k, host, user string, at time.Time) []byte {
		return []byte(sessionhost.Token([]byte(k), host, user, sessionhost.Minute(at)))
	}
	verifier := func(answer []byte) Verifier {
		return func(p []byte) bool { return string(p) == string(answer) }
	}
	m, err := New(Spec{Name: "session_host", Options: map[string]string{"key_file": keyFile, "from": "10.0.0.0/8 192.0.2.7"}},
		Config{ProxyName: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	m.(*sessionHost).now = func() time.Time { return now }
	if !m.NeedsChallenge() {
		t.Fatal("the module must ask for the token")
	}
	tests := []struct {
		name   string
		user   string
		remote string
		answer []byte
		ok     bool
	}{
		{"right token", me.Username, "10.1.2.3", tok(key, "h1", me.Username, now), true},
		{"last minute's token", me.Username, "192.0.2.7", tok(key, "h1", me.Username, now.Add(-time.Minute)), true},
		{"token two minutes old", me.Username, "10.1.2.3", tok(key, "h1", me.Username, now.Add(-2*time.Minute)), false},
		{"another user's token", me.Username, "10.1.2.3", tok(key, "h1", "someone-else", now), false},
		{"another host's token", me.Username, "10.1.2.3", tok(key, "h2", me.Username, now), false},
		{"another key's token", me.Username, "10.1.2.3", tok("fedcba9876543210fedcba9876543210", "h1", me.Username, now), false},
		{"the shared key itself", me.Username, "10.1.2.3", []byte(key), false},
		{"front outside from", me.Username, "192.0.2.8", tok(key, "h1", me.Username, now), false},
		{"IPv4-mapped front", me.Username, "::ffff:10.1.2.3", tok(key, "h1", me.Username, now), true},
		{"unix socket", me.Username, "", tok(key, "h1", me.Username, now), false},
		{"no username", "", "10.1.2.3", tok(key, "h1", "", now), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess, err := m.Authenticate(Request{Username: tt.user, Verify: verifier(tt.answer), RemoteHost: tt.remote})
			if tt.ok {
				if err != nil || sess == nil || sess.Displays != nil || sess.UID != os.Getuid() {
					t.Fatalf("Authenticate = %+v, %v; want the user's own sessions", sess, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrDenied) {
				t.Fatalf("Authenticate = %+v, %v; want a denial", sess, err)
			}
		})
	}
}

func TestSessionHostOptions(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "key")
	short := filepath.Join(dir, "short")
	open := filepath.Join(dir, "open")
	for p, mode := range map[string]os.FileMode{good: 0o600, short: 0o600, open: 0o644} {
		data := "0123456789abcdef0123"
		if p == short {
			data = "tooshort"
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		opts map[string]string
		cfg  Config
		want string // in the error; "" for none
	}{
		{"ok", map[string]string{"key_file": good, "from": "10.0.0.0/8"}, Config{ProxyName: "h"}, ""},
		{"name option instead of proxy-name", map[string]string{"key_file": good, "from": "10.0.0.0/8", "name": "h"}, Config{}, ""},
		{"no name", map[string]string{"key_file": good, "from": "10.0.0.0/8"}, Config{}, "no name"},
		{"no key", map[string]string{"from": "10.0.0.0/8"}, Config{ProxyName: "h"}, "needs key-file"},
		{"short key", map[string]string{"key_file": short, "from": "10.0.0.0/8"}, Config{ProxyName: "h"}, "shorter than 16"},
		{"readable key", map[string]string{"key_file": open, "from": "10.0.0.0/8"}, Config{ProxyName: "h"}, "mode 0644"},
		{"no from", map[string]string{"key_file": good}, Config{ProxyName: "h"}, "needs from"},
		{"bad from", map[string]string{"key_file": good, "from": "10.0.0.0/33"}, Config{ProxyName: "h"}, "neither a CIDR"},
		{"unknown option", map[string]string{"key_file": good, "from": "10.0.0.0/8", "key": "x"}, Config{ProxyName: "h"}, "unknown option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Spec{Name: "session_host", Options: tt.opts}, tt.cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New: %v, want %q", err, tt.want)
			}
		})
	}
}
