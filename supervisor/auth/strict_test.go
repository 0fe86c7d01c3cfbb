// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestStrictModes: every module that reads a file of passwords refuses,
// at start and at each use, one that others can read or write or that a
// user owns, naming the file.
func TestStrictModes(t *testing.T) {
	me := currentUser(t)
	type setup func(t *testing.T, path string)
	chmod := func(mode os.FileMode) setup {
		return func(t *testing.T, path string) {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	chown := func(uid int) setup {
		return func(t *testing.T, path string) {
			if os.Geteuid() != 0 {
				t.Skip("chown needs root")
			}
			if err := os.Chown(path, uid, uid); err != nil {
				t.Fatal(err)
			}
		}
	}
	dirmode := func(mode os.FileMode) setup {
		return func(t *testing.T, path string) {
			if err := os.Chmod(filepath.Dir(path), mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name  string
		setup setup
		ok    bool
	}{
		{"0600", chmod(0o600), true},
		{"0640", chmod(0o640), true},
		{"0400", chmod(0o400), true},
		{"0644 world-readable", chmod(0o644), false},
		{"0660 group-writable", chmod(0o660), false},
		{"0602 world-writable", chmod(0o602), false},
		{"owned by a user", chown(4242), false},
		{"in a world-writable directory", dirmode(0o777), false},
		{"in a group-writable directory", dirmode(0o770), false},
		{"in a sticky world-writable directory", dirmode(os.ModeSticky | 0o777), true},
	}
	modules := []struct {
		name    string
		content string
		spec    func(path string) Spec
		login   Request
	}{
		{"file", "secret\n", func(p string) Spec { return Spec{Name: "file", Options: map[string]string{"filename": p}} },
			Request{Username: me.Username, Verify: verifier("secret")}},
		{"multifile", "foo|bar|" + me.Uid + "|" + me.Gid + "|:1\n", func(p string) Spec { return Spec{Name: "multifile", Options: map[string]string{"filename": p}} },
			Request{Username: "foo", Verify: verifier("bar")}},
		{"sqlite", "", func(p string) Spec { return Spec{Name: "sqlite", Options: map[string]string{"filename": p}} },
			Request{Username: "foo", Verify: verifier("bar")}},
		{"password value-file", "secret\nignored\n", func(p string) Spec {
			return Spec{Name: "password", Options: map[string]string{"value_file": p}}
		}, Request{Username: me.Username, Verify: verifier("secret")}},
	}
	for _, m := range modules {
		for _, c := range cases {
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "secrets")
				if m.name == "sqlite" {
					admin(t, 0, "sqlite", path, "create")
					admin(t, 0, "sqlite", path, "add", "foo", "bar", me.Uid, me.Gid, ":1")
				} else if err := os.WriteFile(path, []byte(m.content), 0o600); err != nil {
					t.Fatal(err)
				}
				// At start.
				c.setup(t, path)
				mod, err := New(m.spec(path), Config{})
				if c.ok {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					if _, err := mod.Authenticate(m.login); err != nil {
						t.Fatalf("login: %v", err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), "secrets") {
					t.Fatalf("New: %v, want a refusal naming the file", err)
				}
				if m.name == "password value-file" {
					return // read once, at start
				}
				// At each use: made unsafe after start.
				if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(path, os.Geteuid(), os.Getegid()); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, 0o600); err != nil {
					t.Fatal(err)
				}
				if mod, err = New(m.spec(path), Config{}); err != nil {
					t.Fatalf("New once safe again: %v", err)
				}
				c.setup(t, path)
				if _, err := mod.Authenticate(m.login); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "secrets") {
					t.Fatalf("login after the file became unsafe: %v, want a denial naming the file", err)
				}
			})
		}
	}
}

// TestAdminCreateMode: the admin command makes a 0600 database whatever
// the umask, refuses a world-writable directory and a planted symlink.
func TestAdminCreateMode(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "users.sdb")
	old := syscall.Umask(0)
	admin(t, 0, "sqlite", db, "create")
	syscall.Umask(old)
	admin(t, 0, "sqlite", db, "add", "foo", "bar")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("created with mode %04o, want 0600", fi.Mode().Perm())
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if out := admin(t, 1, "sqlite", filepath.Join(open, "users.sdb"), "create"); !strings.Contains(out, "world-writable") {
		t.Fatalf("create in a world-writable directory: %q", out)
	}
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link.sdb")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	admin(t, 1, "sqlite", link, "create")
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("create followed a symlink: %v", err)
	}
}

func TestPasswordValue(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("s3cret\r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts map[string]string
		want string // "" : an error
	}{
		{map[string]string{"value": "abc"}, "abc"},
		{map[string]string{"value_file": file}, "s3cret"},
		{map[string]string{"value_file": empty}, ""},
		{map[string]string{"value_file": filepath.Join(dir, "missing")}, ""},
		{map[string]string{"value": "abc", "value_file": file}, ""},
		{map[string]string{}, ""},
	} {
		got, err := passwordValue(Spec{Name: "password", Options: tc.opts}, Config{})
		if string(got) != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("%v: %q, %v; want %q", tc.opts, got, err, tc.want)
		}
	}
	if !SecretOnCommandLine(Spec{Name: "password", Options: map[string]string{"value": "x"}}) ||
		SecretOnCommandLine(Spec{Name: "password", Options: map[string]string{"value_file": file}}) {
		t.Error("SecretOnCommandLine")
	}
}
