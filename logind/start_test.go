// SPDX-License-Identifier: GPL-2.0-or-later

package logind

import (
	"os/user"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// someUser is a non-root account of this machine (Debian always has nobody).
func someUser(t *testing.T) string {
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	return "nobody"
}

func TestSpecComplete(t *testing.T) {
	u := someUser(t)
	ok := Spec{User: u, Command: []string{"/usr/bin/xpra", "start", ":10"}}
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		err  string
	}{
		{"defaults", func(*Spec) {}, ""},
		{"root", func(s *Spec) { s.User = "root" }, "uid 0"},
		{"no user", func(s *Spec) { s.User = "" }, "no user"},
		{"unknown user", func(s *Spec) { s.User = "no-such-user-xpst" }, "no-such-user-xpst"},
		{"no command", func(s *Spec) { s.Command = nil }, "absolute path"},
		{"relative command", func(s *Spec) { s.Command = []string{"xpra"} }, "absolute path"},
		{"newline in argument", func(s *Spec) { s.Command = append(s.Command, "a\nb") }, "control characters"},
		{"bad env name", func(s *Spec) { s.Env = []string{"1A=x"} }, "NAME=value"},
		{"env without =", func(s *Spec) { s.Env = []string{"A"} }, "NAME=value"},
		{"env control char", func(s *Spec) { s.Env = []string{"A=\x01"} }, "NAME=value"},
		{"env tab ok", func(s *Spec) { s.Env = []string{"A=x\ty"} }, ""},
		{"remote host space", func(s *Spec) { s.RemoteHost = "a b" }, "remote host"},
		{"remote host long", func(s *Spec) { s.RemoteHost = strings.Repeat("a", 254) }, "remote host"},
		{"ipv6 remote host", func(s *Spec) { s.RemoteHost = "2001:db8::1" }, ""},
		{"type newline", func(s *Spec) { s.Type = "x11\n" }, "printable"},
		{"unit name", func(s *Spec) { s.Unit = "a/b.service" }, "unit name"},
		{"unit not a service", func(s *Spec) { s.Unit = "x.scope" }, "unit name"},
		{"slice", func(s *Spec) { s.Slice = "xpra-proxy-sessions.slice" }, ""},
		{"bad slice", func(s *Spec) { s.Slice = "system.service" }, "slice"},
		{"relative leader", func(s *Spec) { s.Leader = "xpra-proxy-session" }, "leader"},
		{"hand-made property", func(s *Spec) { s.Properties = []Property{{Assignment: "X=1"}} }, "ParseProperty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			s.Command = append([]string(nil), ok.Command...)
			tc.edit(&s)
			got, uid, err := s.complete()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if uid == 0 || got.Type != "x11" || got.Class != "user" || got.Desktop != "xpra" ||
				got.Leader != DefaultLeader || got.PAMService != "xpra-proxy" || got.StopTimeout != 30*time.Second {
				t.Errorf("defaults: %+v uid %d", got, uid)
			}
			if tc.name == "defaults" && !regexp.MustCompile(`^xpra-proxy-session-[0-9]+-[0-9a-f]{8}\.service$`).MatchString(got.Unit) {
				t.Errorf("unit name %q", got.Unit)
			}
		})
	}
}

func TestUnitProperties(t *testing.T) {
	s, _, err := Spec{User: someUser(t), Command: []string{"/bin/sleep", "infinity"}, RemoteHost: "192.0.2.1",
		Display: ":10", Env: []string{"A=b"}, Slice: "x.slice", StopTimeout: 5 * time.Second}.complete()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, p := range s.unitProperties() {
		got[p.Name] = p.Value.Value()
	}
	want := map[string]any{
		"KillMode":        "mixed",
		"TimeoutStopUSec": uint64(5_000_000),
		"CollectMode":     "inactive-or-failed",
		"Environment":     []string{"A=b"},
		"Slice":           "x.slice",
		"Description":     "xpra session of " + s.User,
	}
	for k, v := range want {
		if !equal(got[k], v) {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	args := strings.Join(LeaderArgs(s), " ")
	wantArgs := DefaultLeader + " --user=" + s.User + " --pam-service=xpra-proxy --type=x11 --class=user --desktop=xpra --rhost=192.0.2.1 --display=:10 -- /bin/sleep infinity"
	if args != wantArgs {
		t.Errorf("leader args\n got %s\nwant %s", args, wantArgs)
	}
	if _, ok := got["ExecStart"]; !ok {
		t.Error("no ExecStart")
	}
}

func equal(a, b any) bool {
	as, ok1 := a.([]string)
	bs, ok2 := b.([]string)
	if ok1 && ok2 {
		return strings.Join(as, "\x00") == strings.Join(bs, "\x00")
	}
	return a == b
}

func TestParseEvent(t *testing.T) {
	p := dbus.ObjectPath("/org/freedesktop/login1/session/_33")
	for _, tc := range []struct {
		name string
		sig  *dbus.Signal
		want Event
		ok   bool
	}{
		{"new", &dbus.Signal{Path: login1Path, Name: login1Manager + ".SessionNew", Body: []any{"3", p}}, Event{SessionNew, "3", p}, true},
		{"removed", &dbus.Signal{Path: login1Path, Name: login1Manager + ".SessionRemoved", Body: []any{"3", p}}, Event{SessionRemoved, "3", p}, true},
		{"other member", &dbus.Signal{Path: login1Path, Name: login1Manager + ".UserNew", Body: []any{uint32(1), p}}, Event{}, false},
		{"other path", &dbus.Signal{Path: "/x", Name: login1Manager + ".SessionNew", Body: []any{"3", p}}, Event{}, false},
		{"bad body", &dbus.Signal{Path: login1Path, Name: login1Manager + ".SessionNew", Body: []any{uint32(3), p}}, Event{}, false},
		{"short body", &dbus.Signal{Path: login1Path, Name: login1Manager + ".SessionNew", Body: []any{"3"}}, Event{}, false},
		{"nil", nil, Event{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseEvent(tc.sig)
			if ok != tc.ok || got != tc.want {
				t.Errorf("got %+v %v, want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
