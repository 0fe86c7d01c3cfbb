// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// admin runs our admin command, failing the test unless it exits with want.
func admin(t *testing.T, want int, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if got := Admin(args, &stdout, &stderr); got != want {
		t.Fatalf("Admin %q: exit %d, want %d; stderr: %s", args, got, want, stderr.String())
	}
	return stdout.String() + stderr.String()
}

// addTestUsers fills db the way the tests and PROXY.md examples do.
func addTestUsers(t *testing.T, add func(args ...string)) {
	add("foo", "bar", "nobody", "nobody", "tcp://127.0.0.1:10100/")
	add("moo", "cow", "nobody", "nobody", "tcp://127.0.0.1:10101/", "", "compression=0")
}

// checkTestUsers authenticates the users of addTestUsers through our module.
func checkTestUsers(t *testing.T, db string) {
	t.Helper()
	nuid, ngid := nobodyIDs(t)
	m, err := New(Spec{Name: "sqlite", Options: map[string]string{"filename": db}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "sqlite" || !m.NeedsChallenge() {
		t.Fatalf("Name %q NeedsChallenge %v", m.Name(), m.NeedsChallenge())
	}
	empty := map[string]string{}
	tests := []struct {
		name string
		req  Request
		want *Session // nil: denied
	}{
		{"foo", Request{Username: "foo", Verify: verifier("bar")},
			&Session{UID: nuid, GID: ngid, Displays: []string{"tcp://127.0.0.1:10100/"}, Env: empty, SessionOptions: empty}},
		{"moo", Request{Username: "moo", Verify: verifier("cow")},
			&Session{UID: nuid, GID: ngid, Displays: []string{"tcp://127.0.0.1:10101/"}, Env: empty,
				SessionOptions: map[string]string{"compression": "0"}}},
		{"moo plain", Request{Username: "moo", Plain: []byte("cow")},
			&Session{UID: nuid, GID: ngid, Displays: []string{"tcp://127.0.0.1:10101/"}, Env: empty,
				SessionOptions: map[string]string{"compression": "0"}}},
		{"wrong password", Request{Username: "foo", Verify: verifier("cow")}, nil},
		{"unknown user", Request{Username: "boo", Verify: verifier("bar")}, nil},
		{"no challenge", Request{Username: "foo"}, nil},
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
}

func TestSQLite(t *testing.T) {
	dir := t.TempDir()
	// A name with URI metacharacters must still name the file.
	db := filepath.Join(dir, "a b?c#d%20.sdb")
	admin(t, 0, "sqlite", db, "create")
	addTestUsers(t, func(args ...string) { admin(t, 0, append([]string{"sqlite", db, "add"}, args...)...) })
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("database not at its literal path: %v", err)
	}
	checkTestUsers(t, db)

	m, err := New(Spec{Name: "sqlite", Options: map[string]string{"filename": db}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	auth := func(user, pw string) (*Session, error) {
		return m.Authenticate(Request{Username: user, Verify: verifier(pw)})
	}

	// Several rows for one user: each password selects its own row. Edits
	// by the admin command apply while the module is in use.
	admin(t, 0, "sqlite", db, "add", "foo", "baz", "0", "0", ":7,:8", "A=1;B=x=y")
	if s, err := auth("foo", "baz"); err != nil || s.UID != 0 || !reflect.DeepEqual(s.Displays, []string{":7", ":8"}) ||
		!reflect.DeepEqual(s.Env, map[string]string{"A": "1", "B": "x=y"}) {
		t.Fatalf("second row: %+v, %v", s, err)
	}
	if s, err := auth("foo", "bar"); err != nil || !reflect.DeepEqual(s.Displays, []string{"tcp://127.0.0.1:10100/"}) {
		t.Fatalf("first row: %+v, %v", s, err)
	}

	// Omitted uid/gid are the invoker's; omitted displays are none (not scan).
	admin(t, 0, "sqlite", db, "add", "min", "pw")
	if s, err := auth("min", "pw"); err != nil || s.UID != os.Getuid() || s.GID != os.Getgid() || s.Displays == nil || len(s.Displays) != 0 {
		t.Fatalf("minimal row: %+v, %v", s, err)
	}

	// Rows the module cannot parse are refused, with the reason.
	admin(t, 0, "sqlite", db, "add", "bad", "pw", "no-such-user-xpra-proxy", "0")
	if _, err := auth("bad", "pw"); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "uid") {
		t.Fatalf("bad uid: %v", err)
	}

	out := admin(t, 0, "sqlite", db, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "username|password|uid|gid|displays|env_options|session_options" || len(lines) != 6 {
		t.Fatalf("list:\n%s", out)
	}
	if want := "moo|***|nobody|nobody|tcp://127.0.0.1:10101/||compression=0"; lines[2] != want {
		t.Fatalf("list row %q, want %q", lines[2], want)
	}
	for _, pw := range []string{"bar", "cow", "baz"} {
		if strings.Contains(out, "|"+pw+"|") {
			t.Fatalf("list shows password %q:\n%s", pw, out)
		}
	}

	admin(t, 0, "sqlite", db, "remove", "foo", "bar")
	if _, err := auth("foo", "bar"); !errors.Is(err, ErrDenied) {
		t.Fatalf("removed row: %v", err)
	}
	if _, err := auth("foo", "baz"); err != nil {
		t.Fatalf("other row of removed one: %v", err)
	}
	admin(t, 0, "sqlite", db, "remove", "foo")
	if _, err := auth("foo", "baz"); !errors.Is(err, ErrDenied) {
		t.Fatalf("removed user: %v", err)
	}
	admin(t, 1, "sqlite", db, "remove", "foo")

	// A database removed while the proxy runs is not recreated.
	if err := os.Remove(db); err != nil {
		t.Fatal(err)
	}
	if _, err := auth("moo", "cow"); !errors.Is(err, ErrDenied) {
		t.Fatalf("removed database: %v", err)
	}
	if _, err := os.Stat(db); err == nil {
		t.Fatal("authentication created the database")
	}

	// A database replaced while the proxy runs (the handle is kept between
	// attempts) is read anew: its users, not the old file's.
	admin(t, 0, "sqlite", db, "create")
	admin(t, 0, "sqlite", db, "add", "moo", "cow", "nobody", "nobody", ":1")
	if s, err := auth("moo", "cow"); err != nil || !reflect.DeepEqual(s.Displays, []string{":1"}) {
		t.Fatalf("recreated database: %+v, %v", s, err)
	}
	next := filepath.Join(dir, "next.sdb")
	admin(t, 0, "sqlite", next, "create")
	admin(t, 0, "sqlite", next, "add", "moo", "calf", "nobody", "nobody", ":2")
	if err := os.Rename(next, db); err != nil {
		t.Fatal(err)
	}
	if _, err := auth("moo", "cow"); !errors.Is(err, ErrDenied) {
		t.Fatalf("the replaced file's password still works: %v", err)
	}
	if s, err := auth("moo", "calf"); err != nil || !reflect.DeepEqual(s.Displays, []string{":2"}) {
		t.Fatalf("replacing database: %+v, %v", s, err)
	}
}

func TestSQLiteOptions(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "custom.sdb")
	admin(t, 0, "sqlite", db, "create")
	admin(t, 0, "sqlite", db, "add", "foo", "bar", "1000", "1000", ":1")

	// The default filename is relative to the start directory.
	t.Chdir(dir)
	admin(t, 0, "sqlite", "sqlite.sdb", "create")
	admin(t, 0, "sqlite", "sqlite.sdb", "add", "dflt", "pw", "1001", "1001")
	m, err := New(Spec{Name: "sqlite", Options: map[string]string{}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := m.Authenticate(Request{Username: "dflt", Verify: verifier("pw")}); err != nil || s.UID != 1001 {
		t.Fatalf("default filename: %+v, %v", s, err)
	}

	tests := []struct {
		name, opts string
		user, pw   string
		wantUID    int // -1: denied
	}{
		// (Options cannot hold commas, so custom queries select one column.)
		{"custom password query", "password_query=SELECT 'bar'", "foo", "bar", 1000},
		{"sessions query with wrong columns", "sessions_query=SELECT uid FROM users WHERE username=(?) AND password=(?)", "foo", "bar", -1},
		{"broken query", "password_query=SELECT nonsense FROM nowhere", "foo", "bar", -1},
	}
	// A missing database stops start-up instead of failing every login.
	if _, err := New(Spec{Name: "sqlite", Options: map[string]string{"filename": filepath.Join(dir, "missing.sdb")}}, Config{}); err == nil || !strings.Contains(err.Error(), "missing.sdb") {
		t.Fatalf("missing database: %v, want an error naming it", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseSpec("sqlite:filename=" + db + "," + tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(spec, Config{})
			if err != nil {
				t.Fatal(err)
			}
			s, err := m.Authenticate(Request{Username: tt.user, Verify: verifier(tt.pw)})
			if tt.wantUID < 0 {
				if !errors.Is(err, ErrDenied) {
					t.Fatalf("got %+v, %v; want ErrDenied", s, err)
				}
				return
			}
			if err != nil || s.UID != tt.wantUID {
				t.Fatalf("got %+v, %v; want uid %d", s, err, tt.wantUID)
			}
		})
	}
}

// xpraHelper returns a runner of Debian's xpra sqlite_auth.py helper, in a
// clean environment so the user's xpra configuration plays no part.
func xpraHelper(t *testing.T) func(args ...string) string {
	t.Helper()
	const script = "/usr/lib/python3/dist-packages/xpra/server/auth/sqlite_auth.py"
	if _, err := os.Stat(script); err != nil {
		testenv.Missing(t, "xpra's sqlite_auth.py (Debian package xpra)")
	}
	python := testenv.SystemPython
	cwd := t.TempDir()
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command(python, append([]string{script}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.Dir = cwd
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sqlite_auth.py %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
}

// TestSQLiteXpraCreated reads a database made by xpra's own helper.
func TestSQLiteXpraCreated(t *testing.T) {
	xpra := xpraHelper(t)
	db := filepath.Join(t.TempDir(), "xpra.sdb")
	xpra(db, "create")
	addTestUsers(t, func(args ...string) { xpra(append([]string{db, "add"}, args...)...) })
	// xpra's helper leaves the umask's 0644: passwords every user can read.
	if _, err := New(Spec{Name: "sqlite", Options: map[string]string{"filename": db}}, Config{}); err == nil || !strings.Contains(err.Error(), db) {
		t.Fatalf("a 0644 database: %v, want a refusal naming it", err)
	}
	if err := os.Chmod(db, 0o600); err != nil {
		t.Fatal(err)
	}
	checkTestUsers(t, db)
	// And our admin command manages it.
	admin(t, 1, "sqlite", db, "create") // the table exists
	admin(t, 0, "sqlite", db, "remove", "foo")
	if out := admin(t, 0, "sqlite", db, "list"); strings.Contains(out, "foo") || !strings.Contains(out, "moo|***|") {
		t.Fatalf("list after remove:\n%s", out)
	}
}

// TestSQLiteXpraReads checks xpra's helper reads a database we made.
func TestSQLiteXpraReads(t *testing.T) {
	xpra := xpraHelper(t)
	db := filepath.Join(t.TempDir(), "ours.sdb")
	admin(t, 0, "sqlite", db, "create")
	addTestUsers(t, func(args ...string) { admin(t, 0, append([]string{"sqlite", db, "add"}, args...)...) })
	out := xpra(db, "list")
	if !strings.Contains(out, "2 rows found") {
		t.Fatalf("xpra list:\n%s", out)
	}
	for _, want := range []string{"foo", "bar", "moo", "cow", "tcp://127.0.0.1:10100/", "tcp://127.0.0.1:10101/", "compression=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("xpra list lacks %q:\n%s", want, out)
		}
	}
	if out := xpra(db, "authenticate", "moo", "cow"); !strings.Contains(out, "success") || !strings.Contains(out, "'compression': '0'") {
		t.Fatalf("xpra authenticate:\n%s", out)
	}
}
