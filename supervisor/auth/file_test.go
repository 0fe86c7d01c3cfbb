// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"testing"
	"time"
)

// verifier is what the supervisor hands modules once a client answered
// the challenge with password.
func verifier(password string) Verifier {
	return func(p []byte) bool { return string(p) == password }
}

// writeFile writes data to path and moves its mtime forward by bump, so a
// rewrite within the file system's mtime granularity is still seen.
func writeFile(t *testing.T, path, data string, bump time.Duration) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if bump != 0 {
		mt := time.Now().Add(bump)
		if err := os.Chtimes(path, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

func currentUser(t *testing.T) *user.User {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Skipf("no current user: %v", err)
	}
	return u
}

func TestFile(t *testing.T) {
	me := currentUser(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "password.txt")
	writeFile(t, path, "secret\n", 0)

	m, err := New(Spec{Name: "file", Options: map[string]string{"filename": path}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "file" || !m.NeedsChallenge() {
		t.Fatalf("Name %q NeedsChallenge %v", m.Name(), m.NeedsChallenge())
	}
	tests := []struct {
		name    string
		req     Request
		wantErr bool
	}{
		{"right password", Request{Username: me.Username, Verify: verifier("secret")}, false},
		{"right plain password", Request{Username: me.Username, Plain: []byte("secret")}, false},
		{"newline is not part of it", Request{Username: me.Username, Verify: verifier("secret\n")}, true},
		{"wrong password", Request{Username: me.Username, Verify: verifier("wrong")}, true},
		{"wrong plain password", Request{Username: me.Username, Plain: []byte("secreT")}, true},
		{"no challenge answered", Request{Username: me.Username}, true},
		{"no username", Request{Verify: verifier("secret")}, true},
		{"unknown system user", Request{Username: "no-such-user-xpra-proxy", Verify: verifier("secret")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := m.Authenticate(tt.req)
			if tt.wantErr {
				if !errors.Is(err, ErrDenied) {
					t.Fatalf("got %v, %v; want ErrDenied", s, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := me.Uid; s == nil || itoa(s.UID) != want || s.Displays != nil {
				t.Fatalf("session %+v, want uid %s and nil (scan) displays", s, want)
			}
		})
	}

	// A changed file is read again; CRLF endings are stripped too.
	writeFile(t, path, "other\r\n", time.Hour)
	if _, err := m.Authenticate(Request{Username: me.Username, Verify: verifier("secret")}); !errors.Is(err, ErrDenied) {
		t.Fatalf("old password after change: %v", err)
	}
	if _, err := m.Authenticate(Request{Username: me.Username, Verify: verifier("other")}); err != nil {
		t.Fatalf("new password after change: %v", err)
	}
	// An empty file lets nobody in; a removed file neither.
	writeFile(t, path, "", 2*time.Hour)
	if _, err := m.Authenticate(Request{Username: me.Username, Verify: verifier("")}); !errors.Is(err, ErrDenied) {
		t.Fatalf("empty file: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Authenticate(Request{Username: me.Username, Verify: verifier("other")}); !errors.Is(err, ErrDenied) {
		t.Fatalf("removed file: %v", err)
	}
}

func TestFileOptions(t *testing.T) {
	me := currentUser(t)
	path := filepath.Join(t.TempDir(), "pw")
	writeFile(t, path, "secret", 0)

	tests := []struct {
		name    string
		spec    string
		cfg     Config
		wantErr bool
	}{
		{"filename option", "file,filename=" + path, Config{}, false},
		{"password file fallback", "file", Config{PasswordFile: path}, false},
		{"option wins over fallback", "file:filename=" + path, Config{PasswordFile: "/nonexistent"}, false},
		{"neither", "file", Config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseSpec(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(spec, tt.cfg)
			if tt.wantErr {
				if err == nil {
					t.Fatal("New succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Authenticate(Request{Username: me.Username, Verify: verifier("secret")}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
