// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReloadSettings drives Reload on a supervisor built by New: a good
// file replaces the modules and limits, a key bound at start-up keeps its
// value and is named, and each broken file keeps the running settings
// with an error naming the key or the file. A snapshot in use when it is
// replaced stays open until its last user is done.
func TestReloadSettings(t *testing.T) {
	dir := t.TempDir()
	worker := filepath.Join(dir, "xpra-proxy-worker")
	for _, p := range []string{worker, filepath.Join(dir, "xpra-proxy-preauth")} {
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pwfile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwfile, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--worker=" + worker, "--run-dir=" + filepath.Join(dir, "run"), "--control-socket=off", "--html=off"}
	args := func(more ...string) []string { return append(slices.Clone(base), more...) }
	cfg, err := ParseFlags(args("--tcp-auth=password,value=one", "--max-relays-per-user=5"))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	s, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	first := s.settings() // an exchange under way across the reloads
	load := func(a []string) func() (Config, error) {
		return func() (Config, error) { return ParseFlags(a) }
	}

	tests := []struct {
		name    string
		args    []string
		wantErr []string // in the error; none: the reload works
		module  string   // tcp's module afterwards
		relays  int      // max-relays-per-user afterwards
		logged  string   // in the log
	}{
		{"module and password change", args("--tcp-auth=file,filename="+pwfile, "--max-relays-per-user=7"), nil, "file", 7, `msg="configuration reloaded" changed=max-relays-per-user,tcp-auth`},
		{"a key bound at start-up", args("--tcp-auth=file,filename="+pwfile, "--max-relays-per-user=7", "--run-dir=/elsewhere"), nil, "file", 7, `keys=run-dir`},
		{"unknown module", args("--tcp-auth=bogus"), []string{"tcp-auth: ", "bogus"}, "file", 7, ""},
		{"missing file", args("--tcp-auth=file,filename=" + filepath.Join(dir, "nope")), []string{"tcp-auth: ", "nope"}, "file", 7, ""},
		{"bad limit", args("--tcp-auth=none", "--per-source-penalty=5s", "--per-source-penalty-max=1s"), []string{"penalty"}, "file", 7, ""},
		{"unusable flag", args("--max-relays-per-user=-1"), []string{"max-relays-per-user"}, "file", 7, ""},
		{"two password modules", args("--tcp-auth=file,filename="+pwfile, "--tcp-auth=password,value=x"), []string{"tcp-auth: ", "at most one module"}, "file", 7, ""},
		{"back to a password", args("--tcp-auth=password,value=three"), nil, "password", 50, `msg="configuration reloaded"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Reload(load(tt.args))
			switch {
			case len(tt.wantErr) == 0 && err != nil:
				t.Fatalf("reload: %v", err)
			case len(tt.wantErr) > 0 && err == nil:
				t.Fatalf("reload of a broken configuration worked")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not name %q: %v", w, err)
				}
			}
			cur := s.current()
			if got := cur.modules["tcp"][0].Name(); got != tt.module {
				t.Errorf("tcp module %s, want %s", got, tt.module)
			}
			if s.userRelays.max != tt.relays {
				t.Errorf("max-relays-per-user %d, want %d", s.userRelays.max, tt.relays)
			}
			if cur.cfg.RunDir != cfg.RunDir {
				t.Errorf("run-dir became %s: only a restart changes it", cur.cfg.RunDir)
			}
			if tt.logged != "" && !strings.Contains(logs.String(), tt.logged) {
				t.Errorf("the log lacks %q:\n%s", tt.logged, logs.String())
			}
			failed := strings.Contains(s.statusLine(), "reload failed")
			if failed != (len(tt.wantErr) > 0) {
				t.Errorf("status line %q after this reload (err %v)", s.statusLine(), err)
			}
		})
	}
	if !strings.Contains(logs.String(), `level=ERROR msg="reload failed: the running configuration stays"`) {
		t.Errorf("no failed reload logged at error level:\n%s", logs.String())
	}

	// The first snapshot, still in use, kept its memfd open through every
	// reload; its last user closes it.
	if _, err := first.front.Stat(); err != nil {
		t.Fatalf("the snapshot in use lost its front memfd: %v", err)
	}
	if first.modules["tcp"][0].Name() != "password" {
		t.Fatalf("the snapshot in use changed")
	}
	s.done(first)
	if _, err := first.front.Stat(); err == nil {
		t.Errorf("the replaced snapshot's memfd is still open after its last user")
	}
	s.current().close(s.log)
}

// TestDiffKeys names changed settings by their TOML keys, embedded
// structs included.
func TestDiffKeys(t *testing.T) {
	a := Defaults()
	tests := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"auth", func(c *Config) { c.TCPAuth = []string{"none"} }, []string{"tcp-auth"}},
		{"front and session", func(c *Config) { c.SSLCert = "x"; c.StartSession = StartNever }, []string{"ssl-cert", "start-session"}},
		{"account and limits", func(c *Config) { c.MaxRelaysPerUser = 1; c.PerSourceRate = 2 }, []string{"max-relays-per-user", "per-source-rate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Defaults()
			tt.change(&b)
			if got := diffKeys(a, b); !slices.Equal(got, tt.want) {
				t.Errorf("diffKeys = %q, want %q", got, tt.want)
			}
		})
	}
}
