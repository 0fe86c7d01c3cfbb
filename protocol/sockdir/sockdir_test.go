// SPDX-License-Identifier: GPL-2.0-or-later

package sockdir

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// kind of filesystem object a fixture creates.
type kind int

const (
	live    kind = iota // listening unix socket
	stale               // socket file with nobody listening
	regular             // plain file
	dir                 // directory
)

// makeFixture creates path as k, with parent directories; live listeners
// are closed when the test ends.
func makeFixture(t *testing.T, path string, k kind) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	switch k {
	case live, stale:
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		if k == stale {
			// Keep the socket file after closing: connect() then gets
			// ECONNREFUSED, like a crashed server's leftover.
			l.SetUnlinkOnClose(false)
			l.Close()
			return
		}
		t.Cleanup(func() { l.Close() })
	case regular:
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	case dir:
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProbe(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name  string
		setup func(p string)
		want  State
	}{
		{"listening", func(p string) { makeFixture(t, p, live) }, Live},
		{"stale", func(p string) { makeFixture(t, p, stale) }, Unknown},
		{"missing", func(p string) {}, Dead},
		{"regular", func(p string) { makeFixture(t, p, regular) }, Dead},
		{"directory", func(p string) { makeFixture(t, p, dir) }, Dead},
		{"symlink", func(p string) {
			makeFixture(t, p+".target", live)
			if err := os.Symlink(p+".target", p); err != nil {
				t.Fatal(err)
			}
		}, Live},
		{"dangling", func(p string) {
			if err := os.Symlink(p+".nowhere", p); err != nil {
				t.Fatal(err)
			}
		}, Dead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(root, tc.name)
			tc.setup(p)
			if got := Probe(p); got != tc.want {
				t.Errorf("Probe(%s) = %s, want %s", tc.name, got, tc.want)
			}
		})
	}
	t.Run("parent is a file", func(t *testing.T) {
		p := filepath.Join(root, "regular", "h-1") // ENOTDIR
		if got := Probe(p); got != Dead {
			t.Errorf("Probe = %s, want %s", got, Dead)
		}
	})
}

func TestProbeInaccessible(t *testing.T) {
	if path := os.Getenv("SOCKDIR_PROBE_CHILD"); path != "" {
		fmt.Println(Probe(path)) // the child half, run unprivileged
		return
	}
	dir, err := os.MkdirTemp("", "sockdir-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "h-1")
	makeFixture(t, p, live)
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if got := Probe(p); got != Inaccessible {
			t.Errorf("Probe = %s, want %s", got, Inaccessible)
		}
		return
	}
	// Root's connect() ignores permission bits: probe as nobody instead.
	if got := asNobody(t, dir, "TestProbeInaccessible", "SOCKDIR_PROBE_CHILD="+p); got != string(Inaccessible) {
		t.Errorf("Probe as nobody = %q, want %s", got, Inaccessible)
	}
}

// asNobody runs one test of this binary as nobody with env set and returns
// the first line it prints: permission checks do not apply to root. The
// binary is copied into dir (which nobody can read) because go test keeps
// it in a private directory.
func asNobody(t *testing.T, dir, test, env string) string {
	t.Helper()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sockdir.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+test+"$")
	cmd.Env = []string{env}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running %s as nobody: %v", test, err)
	}
	return strings.TrimSpace(strings.Split(string(out), "\n")[0])
}

func TestDirs(t *testing.T) {
	tests := []struct {
		uid  int
		home string
		want []string
	}{
		{1000, "/home/alice", []string{"/run/user/1000/xpra", "/run/xpra", "/home/alice/.xpra"}},
		{0, "/root", []string{"/run/user/0/xpra", "/run/xpra", "/root/.xpra"}},
		{5, "", []string{"/run/user/5/xpra", "/run/xpra"}},
	}
	for _, tc := range tests {
		if got := Dirs(tc.uid, tc.home); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Dirs(%d, %q) = %q, want %q", tc.uid, tc.home, got, tc.want)
		}
	}
}

func TestExpand(t *testing.T) {
	tests := []struct {
		name string
		xdg  string
		in   []string
		want []string
	}{
		{"tilde", "/x", []string{"~/.xpra", "~", "/a/~/b"}, []string{"/home/al/.xpra", "/home/al", "/a/~/b"}},
		{"uid and user", "/x", []string{"/run/user/$UID/xpra", "/tmp/${USER}-xpra", "/srv/$USER/s"}, []string{"/run/user/1000/xpra", "/tmp/al-xpra", "/srv/al/s"}},
		{"xdg set", "/custom/rt", []string{"$XDG_RUNTIME_DIR/xpra", "${XDG_RUNTIME_DIR}/x"}, []string{"/custom/rt/xpra", "/custom/rt/x"}},
		{"xdg unset", "", []string{"$XDG_RUNTIME_DIR/xpra"}, []string{"/run/user/1000/xpra"}},
		{"unknown vars kept", "/x", []string{"/a/$HOME/b", "/a/${OTHER}", "/cost$", "/a/${UID"}, []string{"/a/$HOME/b", "/a/${OTHER}", "/cost$", "/a/${UID"}},
		{"longer name not split", "/x", []string{"/a/$USERNAME"}, []string{"/a/$USERNAME"}},
		{"empty dropped", "/x", []string{"", "/run/xpra"}, []string{"/run/xpra"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", tc.xdg)
			if got := Expand(tc.in, 1000, "al", "/home/al"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Expand(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestHostname(t *testing.T) {
	t.Setenv("XPRA_SOCKET_HOSTNAME", "override.example")
	if got := Hostname(); got != "override.example" {
		t.Errorf("Hostname() = %q with XPRA_SOCKET_HOSTNAME set", got)
	}
	t.Setenv("XPRA_SOCKET_HOSTNAME", "")
	want, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	if got := Hostname(); got != want {
		t.Errorf("Hostname() = %q, want os.Hostname() %q", got, want)
	}
}

func TestSocketName(t *testing.T) {
	tests := []struct {
		host, display, want, err string
	}{
		{"vm", ":147", "vm-147", ""},
		{"vm", "10", "vm-10", ""},
		{"my-host.lan", ":0", "my-host.lan-0", ""},
		{"vm", ":10.0", "", "not :<number>"},
		{"vm", ":proxy-12", "", "not :<number>"},
		{"vm", "", "", "not :<number>"},
		{"vm", ":", "", "not :<number>"},
		{"vm", ":-1", "", "not :<number>"},
		{"vm", ":1234567890", "", "not :<number>"},
		{"", ":1", "", "empty hostname"},
		{"a/b", ":1", "", "invalid hostname"},
		{"..", ":1", "", "invalid hostname"},
	}
	for _, tc := range tests {
		got, err := SocketName(tc.host, tc.display)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SocketName(%q, %q) = %q, %v; want error containing %q", tc.host, tc.display, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("SocketName(%q, %q) = %q, %v; want %q", tc.host, tc.display, got, err, tc.want)
		}
	}
}

type fixture struct {
	path string // relative to the test root
	k    kind
}

// build creates fixtures under a fresh root and returns the root.
func build(t *testing.T, fx []fixture) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range fx {
		makeFixture(t, filepath.Join(root, f.path), f.k)
	}
	return root
}

func TestList(t *testing.T) {
	tests := []struct {
		name string
		fx   []fixture
		dirs []string // relative to the root
		want []Session
	}{
		{
			name: "empty and missing dirs",
			fx:   []fixture{{"a", dir}},
			dirs: []string{"a", "missing", "a/nothing"},
			want: []Session{},
		},
		{
			name: "3.1 layout sorted numerically",
			fx: []fixture{
				{"a/h-10", live}, {"a/h-2", stale}, {"a/h-3", live},
			},
			dirs: []string{"a"},
			want: []Session{{":2", "a/h-2", Unknown}, {":3", "a/h-3", Live}, {":10", "a/h-10", Live}},
		},
		{
			name: "other hosts, proxies and junk ignored",
			fx: []fixture{
				{"a/other-5", live}, {"a/h-proxy-123", live}, {"a/h-x", live}, {"a/h-", live},
				{"a/h-7", regular}, {"a/hh-8", live}, {"a/h-9.0", live}, {"a/h-1", live},
				{"a/13", dir}, {"a/14", regular}, {"a/15/socket", regular}, {"a/h-1234567890", live},
			},
			dirs: []string{"a"},
			want: []Session{{":1", "a/h-1", Live}},
		},
		{
			name: "6.x session dirs",
			fx:   []fixture{{"a/12/socket", live}, {"a/4/socket", stale}},
			dirs: []string{"a"},
			want: []Session{{":4", "a/4/socket", Unknown}, {":12", "a/12/socket", Live}},
		},
		{
			name: "first dir wins",
			fx: []fixture{
				{"a/h-1", live}, {"b/h-1", live},
				{"a/h-2", stale}, {"b/h-2", stale},
				{"b/h-3", stale},
			},
			dirs: []string{"a", "b"},
			want: []Session{{":1", "a/h-1", Live}, {":2", "a/h-2", Unknown}, {":3", "b/h-3", Unknown}},
		},
		{
			name: "later live beats earlier stale",
			fx:   []fixture{{"a/h-1", stale}, {"b/h-1", live}, {"c/h-1", live}},
			dirs: []string{"a", "b", "c"},
			want: []Session{{":1", "b/h-1", Live}},
		},
		{
			name: "3.1 name before 6.x dir in the same dir",
			fx: []fixture{
				{"a/h-20", stale}, {"a/20/socket", stale},
				{"a/h-21", live}, {"a/21/socket", live},
				{"a/h-22", stale}, {"a/22/socket", live},
			},
			dirs: []string{"a"},
			want: []Session{{":20", "a/h-20", Unknown}, {":21", "a/h-21", Live}, {":22", "a/22/socket", Live}},
		},
		{
			name: "dir given twice",
			fx:   []fixture{{"a/h-1", live}},
			dirs: []string{"a", "a"},
			want: []Session{{":1", "a/h-1", Live}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := build(t, tc.fx)
			var dirs []string
			for _, d := range tc.dirs {
				dirs = append(dirs, filepath.Join(root, d))
			}
			got, err := List(dirs, "h")
			if err != nil {
				t.Fatal(err)
			}
			want := make([]Session, len(tc.want))
			for i, s := range tc.want {
				s.Path = filepath.Join(root, s.Path)
				want[i] = s
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("List\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestListErrors(t *testing.T) {
	if _, err := List([]string{t.TempDir()}, ""); err == nil {
		t.Error("List with empty hostname succeeded")
	}
	if _, err := List([]string{t.TempDir()}, "../h"); err == nil {
		t.Error("List with hostname containing '/' succeeded")
	}
}

func TestListUnreadable(t *testing.T) {
	if d := os.Getenv("SOCKDIR_LIST_CHILD"); d != "" {
		_, err := List([]string{d}, "h") // the child half, run unprivileged
		fmt.Println(err)
		return
	}
	base, err := os.MkdirTemp("", "sockdir-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	d := filepath.Join(base, "locked")
	makeFixture(t, d, dir)
	if err := os.Chmod(d, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(d, 0o755) })
	var got string
	if os.Geteuid() == 0 {
		got = asNobody(t, base, "TestListUnreadable", "SOCKDIR_LIST_CHILD="+d) // root reads any directory
	} else if _, err := List([]string{d}, "h"); err != nil {
		got = err.Error()
	}
	if !strings.Contains(got, "sockdir: reading") {
		t.Errorf("List(unreadable dir) error = %q", got)
	}
}

func TestFind(t *testing.T) {
	root := build(t, []fixture{
		{"a/h-1", stale}, {"b/h-1", live},
		{"a/h-2", live},
		{"a/h-3", stale}, {"b/3/socket", regular},
		{"b/4/socket", live},
		{"a/h-5", regular},
	})
	dirs := []string{filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "missing")}
	tests := []struct {
		display string
		want    string // relative path, or ""
		err     []string
	}{
		{":1", "b/h-1", nil},
		{"2", "a/h-2", nil},
		{":4", "b/4/socket", nil},
		{":3", "", []string{"display :3 is not live", "a/h-3 is UNKNOWN", "b/3/socket is DEAD"}},
		{":5", "", []string{"a/h-5 is DEAD"}},
		{":6", "", []string{"no socket for display :6"}},
		{":x", "", []string{"not :<number>"}},
	}
	for _, tc := range tests {
		t.Run(tc.display, func(t *testing.T) {
			got, err := Find(dirs, "h", tc.display)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("Find(%s) = %q, want error", tc.display, got)
				}
				for _, s := range tc.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Find(%s) error %q lacks %q", tc.display, err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(root, tc.want); got != want {
				t.Errorf("Find(%s) = %q, want %q", tc.display, got, want)
			}
		})
	}
}
