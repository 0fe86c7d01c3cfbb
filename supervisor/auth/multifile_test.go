// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func itoa(n int) string { return strconv.Itoa(n) }

const testMultifile = `# xpra multifile: username|password|uid|gid|displays|env|session

foo|secret|nobody|nobody|tcp://127.0.0.1:10000/,:10|A=1;B=x=y|compression=0
   bar|secret|1000|1001|:20   
short|secret
justaname
foo|other|root|root|:99
numbers|secret|0|0||
rooted|secret|root|root|:1
badid|secret|no-such-user-xpra-proxy|0|:1
crlf|secret|nobody|nobody|:30` + "\r\n"

func nobodyIDs(t *testing.T) (int, int) {
	t.Helper()
	uid, err := LookupUID("")
	if err != nil {
		t.Skipf("no nobody user: %v", err)
	}
	gid, err := LookupGID("")
	if err != nil {
		t.Skipf("no nobody group: %v", err)
	}
	return uid, gid
}

func TestParseMultifile(t *testing.T) {
	nuid, ngid := nobodyIDs(t)
	entries, warnings := parseMultifile([]byte(testMultifile))
	want := map[string]Session{
		"foo": {UID: nuid, GID: ngid, Displays: []string{"tcp://127.0.0.1:10000/", ":10"},
			Env: map[string]string{"A": "1", "B": "x=y"}, SessionOptions: map[string]string{"compression": "0"}},
		"bar":     {UID: 1000, GID: 1001, Displays: []string{":20"}, Env: map[string]string{}, SessionOptions: map[string]string{}},
		"short":   {UID: nuid, GID: ngid, Displays: []string{}, Env: map[string]string{}, SessionOptions: map[string]string{}},
		"numbers": {UID: 0, GID: 0, Displays: []string{}, Env: map[string]string{}, SessionOptions: map[string]string{}},
		"rooted":  {UID: 0, GID: 0, Displays: []string{":1"}, Env: map[string]string{}, SessionOptions: map[string]string{}},
		"crlf":    {UID: nuid, GID: ngid, Displays: []string{":30"}, Env: map[string]string{}, SessionOptions: map[string]string{}},
	}
	if len(entries) != len(want) {
		t.Errorf("got %d entries, want %d", len(entries), len(want))
	}
	for name, ws := range want {
		e, ok := entries[name]
		if !ok {
			t.Errorf("no entry for %q", name)
			continue
		}
		if string(e.password) != "secret" {
			t.Errorf("%s: password %q", name, e.password)
		}
		if !reflect.DeepEqual(e.session, ws) {
			t.Errorf("%s: session %+v, want %+v", name, e.session, ws)
		}
	}
	if e := entries["short"]; e.session.Displays == nil {
		t.Error("short line: nil displays (scan) instead of an empty list")
	}
	// One warning each for the nameless line, the duplicate and the bad uid,
	// naming the line but never a password.
	wantWarn := []string{"line 6:", "line 7: duplicate entry for user \"foo\", keeping line 3", "line 10:"}
	if len(warnings) != len(wantWarn) {
		t.Fatalf("warnings %q, want %d", warnings, len(wantWarn))
	}
	for i, w := range warnings {
		if !strings.HasPrefix(w.Error(), wantWarn[i]) {
			t.Errorf("warning %d: %q, want prefix %q", i, w, wantWarn[i])
		}
		if strings.Contains(w.Error(), "secret") || strings.Contains(w.Error(), "other") {
			t.Errorf("warning %d shows a password: %q", i, w)
		}
	}
}

func TestMultifile(t *testing.T) {
	nuid, ngid := nobodyIDs(t)
	path := filepath.Join(t.TempDir(), "users.txt")
	writeFile(t, path, testMultifile, 0)
	if _, err := New(Spec{Name: "multifile", Options: map[string]string{}}, Config{PasswordFile: path}); err == nil {
		t.Fatal("multifile without filename accepted")
	}
	m, err := New(Spec{Name: "multifile", Options: map[string]string{"filename": path}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "multifile" || !m.NeedsChallenge() {
		t.Fatalf("Name %q NeedsChallenge %v", m.Name(), m.NeedsChallenge())
	}

	tests := []struct {
		name string
		req  Request
		want *Session // nil: denied
	}{
		{"right password", Request{Username: "foo", Verify: verifier("secret")},
			&Session{UID: nuid, GID: ngid, Displays: []string{"tcp://127.0.0.1:10000/", ":10"},
				Env: map[string]string{"A": "1", "B": "x=y"}, SessionOptions: map[string]string{"compression": "0"}}},
		{"plain password", Request{Username: "bar", Plain: []byte("secret")},
			&Session{UID: 1000, GID: 1001, Displays: []string{":20"}, Env: map[string]string{}, SessionOptions: map[string]string{}}},
		{"duplicate's password", Request{Username: "foo", Verify: verifier("other")}, nil},
		{"wrong password", Request{Username: "foo", Verify: verifier("wrong")}, nil},
		{"unknown user", Request{Username: "nobody-here", Verify: verifier("secret")}, nil},
		{"skipped line", Request{Username: "badid", Verify: verifier("secret")}, nil},
		{"no challenge", Request{Username: "foo"}, nil},
		{"empty username", Request{Verify: verifier("secret")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := m.Authenticate(tt.req)
			if tt.want == nil {
				if !errors.Is(err, ErrDenied) {
					t.Fatalf("got %+v, %v; want ErrDenied", s, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s, tt.want) {
				t.Fatalf("session %+v, want %+v", s, tt.want)
			}
		})
	}

	// An unknown user still costs a verification.
	calls := 0
	m.Authenticate(Request{Username: "nobody-here", Verify: func([]byte) bool { calls++; return false }})
	if calls != 1 {
		t.Errorf("unknown user: %d verifications, want 1", calls)
	}

	// A caller changing its session does not change the module's.
	s, _ := m.Authenticate(Request{Username: "foo", Verify: verifier("secret")})
	s.Displays[0], s.Env["A"] = "changed", "changed"
	s, _ = m.Authenticate(Request{Username: "foo", Verify: verifier("secret")})
	if s.Displays[0] != "tcp://127.0.0.1:10000/" || s.Env["A"] != "1" {
		t.Fatalf("cached session changed: %+v", s)
	}

	// Editing the file applies without a restart.
	writeFile(t, path, "foo|newpass|nobody|nobody|:50\n", time.Hour)
	if _, err := m.Authenticate(Request{Username: "foo", Verify: verifier("secret")}); !errors.Is(err, ErrDenied) {
		t.Fatalf("old password after edit: %v", err)
	}
	s, err = m.Authenticate(Request{Username: "foo", Verify: verifier("newpass")})
	if err != nil || !reflect.DeepEqual(s.Displays, []string{":50"}) {
		t.Fatalf("after edit: %+v, %v", s, err)
	}
	if _, err := m.Authenticate(Request{Username: "bar", Verify: verifier("secret")}); !errors.Is(err, ErrDenied) {
		t.Fatalf("removed user after edit: %v", err)
	}
}

// FuzzParseMultifile checks the parser never panics and only yields
// well-formed entries. The file is admin-written, so a short run will do:
//
//	go test -run '^$' -fuzz FuzzParseMultifile -fuzztime 5s ./supervisor/auth
func FuzzParseMultifile(f *testing.F) {
	f.Add([]byte(testMultifile))
	f.Add([]byte("a|b\n\n#c\n|x\nd\n"))
	f.Add([]byte("u|p|0|0|:1,,:2|=;k=v=w;;|x\r\nu|q"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _ := parseMultifile(data)
		for name, e := range entries {
			if name == "" || strings.ContainsAny(name, "|\n") || strings.HasPrefix(name, "#") {
				t.Fatalf("bad username %q", name)
			}
			if strings.ContainsAny(string(e.password), "|\n") {
				t.Fatalf("bad password %q", e.password)
			}
			if e.line < 1 || e.session.Displays == nil || e.session.Env == nil || e.session.SessionOptions == nil {
				t.Fatalf("bad entry %+v", e)
			}
			for _, d := range e.session.Displays {
				if d == "" || strings.Contains(d, ",") {
					t.Fatalf("bad display %q", d)
				}
			}
		}
	})
}
