// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/pgdir/pgstore"
)

// pgDirectory starts a throwaway cluster and returns it, a root-only file
// holding its URI (as the admin command and directory-uri-file take it)
// and a pool on it bounded by timeout, retried after retry.
func pgDirectory(t *testing.T, timeout, retry time.Duration) (*pglab.Cluster, string, *pgdir.DB) {
	t.Helper()
	c := pglab.Start(t)
	uriFile := filepath.Join(t.TempDir(), "directory.uri")
	if err := os.WriteFile(uriFile, []byte(c.URI()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := pgstore.Local(pgdir.Config{URI: c.URI(), Timeout: timeout, Retry: retry, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return c, uriFile, db
}

func TestPostgreSQLModule(t *testing.T) {
	c, uriFile, db := pgDirectory(t, time.Second, 500*time.Millisecond)
	nuid, ngid := nobodyIDs(t)
	// Users added with the admin command, as an admin would.
	admin(t, 0, "postgresql", uriFile, "create")
	addTestUsers(t, func(args ...string) { admin(t, 0, append([]string{"postgresql", uriFile, "add"}, args...)...) })
	// A second password of foo's selects another row.
	admin(t, 0, "postgresql", uriFile, "add", "foo", "baz", "nobody", "", ":7", "A=1;B=x=y", "")
	admin(t, 0, "postgresql", uriFile, "add", "ghost", "boo", "no-such-user-here", "nobody")

	// The fallback: a sqlite database holding a user the directory lacks.
	sdb := filepath.Join(t.TempDir(), "fallback.sdb")
	admin(t, 0, "sqlite", sdb, "create")
	admin(t, 0, "sqlite", sdb, "add", "local", "pw", "nobody", "nobody", ":9")
	withFallback, err := New(Spec{Name: "postgresql", Options: map[string]string{"fallback": "sqlite,filename=" + sdb}}, Config{Directory: db})
	if err != nil {
		t.Fatal(err)
	}
	alone, err := New(Spec{Name: "postgresql", Options: map[string]string{}}, Config{Directory: db})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Module{withFallback, alone} {
		if _, plain := m.(PlainPassword); m.Name() != "postgresql" || !m.NeedsChallenge() || plain {
			t.Fatalf("Name %q NeedsChallenge %v PlainPassword %v", m.Name(), m.NeedsChallenge(), plain)
		}
	}
	t.Cleanup(func() { withFallback.(*postgresqlModule).Close() })

	empty := map[string]string{}
	fooRow := &Session{UID: nuid, GID: ngid, Displays: []string{"tcp://127.0.0.1:10100/"}, Env: empty, SessionOptions: empty}
	mooRow := &Session{UID: nuid, GID: ngid, Displays: []string{"tcp://127.0.0.1:10101/"}, Env: empty,
		SessionOptions: map[string]string{"compression": "0"}}
	localRow := &Session{UID: nuid, GID: ngid, Displays: []string{":9"}, Env: empty, SessionOptions: empty}
	type check struct {
		name string
		req  Request
		want *Session // nil: denied
	}
	up := []check{
		{"right password", Request{Username: "foo", Verify: verifier("bar")}, fooRow},
		{"the other password selects its row", Request{Username: "foo", Verify: verifier("baz")},
			&Session{UID: nuid, GID: ngid, Displays: []string{":7"}, Env: map[string]string{"A": "1", "B": "x=y"}, SessionOptions: empty}},
		{"session options", Request{Username: "moo", Verify: verifier("cow")}, mooRow},
		{"plain password", Request{Username: "moo", Plain: []byte("cow")}, mooRow},
		{"wrong password", Request{Username: "foo", Verify: verifier("cow")}, nil},
		{"unknown user", Request{Username: "boo", Verify: verifier("bar")}, nil},
		{"only in the fallback", Request{Username: "local", Verify: verifier("pw")}, nil},
		{"no challenge", Request{Username: "foo"}, nil},
		{"uid that does not resolve", Request{Username: "ghost", Verify: verifier("boo")}, nil},
	}
	down := []check{
		{"fallback grants its user", Request{Username: "local", Verify: verifier("pw")}, localRow},
		{"fallback refuses a wrong password", Request{Username: "local", Verify: verifier("nope")}, nil},
		{"fallback does not know the directory's user", Request{Username: "foo", Verify: verifier("bar")}, nil},
	}
	run := func(m Module, checks []check) {
		t.Helper()
		for _, tt := range checks {
			t.Run(tt.name, func(t *testing.T) {
				s, err := m.Authenticate(tt.req)
				if tt.want == nil {
					if !errors.Is(err, ErrDenied) {
						t.Fatalf("got %+v, %v; want ErrDenied", s, err)
					}
					if errors.Is(err, pgdir.ErrUnavailable) {
						t.Fatalf("a refusal with the database up says it is down: %v", err)
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
	t.Run("up", func(t *testing.T) { run(alone, up); run(withFallback, up) })
	if n := db.FallbackLogins(); n != 0 {
		t.Fatalf("%d fallback logins with the database up", n)
	}

	c.Stop()
	t.Run("down, no fallback", func(t *testing.T) {
		// The first call finds the database gone (bounded by the
		// timeout), the next within the retry window fail at once.
		refusedForOutage(t, alone)
	})
	t.Run("down, fallback", func(t *testing.T) { run(withFallback, down) })
	if n := db.FallbackLogins(); n != uint64(len(down)) {
		t.Fatalf("%d fallback logins, want %d", n, len(down))
	}

	c.Start()
	// Past the retry window the database is tried again: no restart.
	time.Sleep(600 * time.Millisecond)
	t.Run("back up", func(t *testing.T) { run(withFallback, up[:1]); run(alone, up[:1]) })
	if !db.Status().Up {
		t.Fatalf("status after recovery: %+v", db.Status())
	}
}

// TestPostgreSQLSilentDatabase: a database host that accepts connections
// and never answers (a hung server, a black-holed route) holds a login
// for directory-timeout at most, and the next ones not at all.
func TestPostgreSQLSilentDatabase(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	db, err := pgstore.Local(pgdir.Config{URI: "postgres://u:p@" + l.Addr().String() + "/d?sslmode=disable",
		Timeout: time.Second, Retry: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := New(Spec{Name: "postgresql", Options: map[string]string{}}, Config{Directory: db})
	if err != nil {
		t.Fatal(err)
	}
	refusedForOutage(t, m)
}

// refusedForOutage checks that m, without a fallback, refuses a login
// while its database is unreachable, saying why, and logs how long the
// first call (which finds the outage) and the next (within the retry
// window) took.
func refusedForOutage(t *testing.T, m Module) {
	t.Helper()
	for _, what := range []string{"first call", "within retry"} {
		start := time.Now()
		s, err := m.Authenticate(Request{Username: "foo", Verify: verifier("bar")})
		took := time.Since(start)
		t.Logf("%s: refused after %v", what, took)
		if !errors.Is(err, ErrDenied) || !errors.Is(err, pgdir.ErrUnavailable) {
			t.Fatalf("%s: %+v, %v; want a refusal naming the outage", what, s, err)
		}
		// A hang guard, not a timing claim: pgdir's bound is 1 s here.
		if took > 10*time.Second {
			t.Fatalf("%s: refused only after %v", what, took)
		}
	}
}

func TestPostgreSQLModuleOptions(t *testing.T) {
	_, _, db := pgDirectory(t, time.Second, time.Second)
	pam := fakeProgram(t)
	sdb := filepath.Join(t.TempDir(), "fallback.sdb")
	admin(t, 0, "sqlite", sdb, "create")
	tests := []struct {
		name  string
		spec  string
		dir   *pgdir.DB
		plain bool   // a PlainPassword module
		err   string // "": builds
	}{
		{"plain", "postgresql", db, false, ""},
		{"sqlite fallback", `postgresql,fallback="sqlite,filename=` + sdb + `"`, db, false, ""},
		{"pam fallback", `postgresql,fallback="pam,helper=` + pam + `"`, db, true, ""},
		{"no directory", "postgresql", nil, false, "directory-uri-file"},
		{"unknown option", "postgresql,filename=x", db, false, `unknown option "filename"`},
		{"itself as fallback", "postgresql,fallback=postgresql", db, false, "cannot be the database that failed"},
		{"none as fallback", "postgresql,fallback=none", db, false, "anyone in"},
		{"allow as fallback", "postgresql,fallback=allow", db, false, "anyone in"},
		{"bad fallback", "postgresql,fallback=nosuch", db, false, `unknown module "nosuch"`},
		{"fallback that fails", `postgresql,fallback="sqlite,filename=/nonexistent/x.sdb"`, db, false, "fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseSpec(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(spec, Config{Directory: tt.dir})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("New(%q) = %v, want an error with %q", tt.spec, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			pm, plain := m.(PlainPassword)
			if plain != tt.plain || m.Name() != "postgresql" || !m.NeedsChallenge() {
				t.Fatalf("PlainPassword %v Name %q NeedsChallenge %v", plain, m.Name(), m.NeedsChallenge())
			}
			if plain {
				// As pam itself: the password only over TLS.
				if err := pm.CheckTransport(false); err == nil {
					t.Fatal("a pam fallback lets the password cross an unencrypted connection")
				}
				if err := pm.CheckTransport(true); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// The admin command and the module run the helper's server in the test's
// process: the helper binary is e2e's (TestPostgreSQL).
func init() {
	StartDirectory = func(cfg pgdir.Config, _ []int) (*pgdir.DB, error) { return pgstore.Local(cfg) }
}
