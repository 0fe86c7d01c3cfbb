// SPDX-License-Identifier: GPL-2.0-or-later

package leader

import (
	"os/user"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/logind"
)

// The leader reads what logind.LeaderArgs writes.
func TestParseArgsRoundTrip(t *testing.T) {
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	spec := logind.Spec{User: "nobody", Command: []string{"/usr/bin/xpra", "start", "--", "-x"},
		RemoteHost: "2001:db8::7", Display: ":12", Type: "x11", Class: "user", Desktop: "xpra",
		PAMService: "xpra-proxy", Leader: logind.DefaultLeader}
	args := logind.LeaderArgs(spec)
	o, err := ParseArgs(args[1:])
	if err != nil {
		t.Fatal(err)
	}
	want := Options{User: "nobody", PAMService: "xpra-proxy", Type: "x11", Class: "user", Desktop: "xpra",
		RemoteHost: "2001:db8::7", Display: ":12", Command: spec.Command}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("got %+v\nwant %+v", o, want)
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--", "/bin/true"}, "no --user"},
		{[]string{"--user=u", "--pam-service=", "--", "/bin/true"}, "no --pam-service"},
		{[]string{"--user=u"}, "absolute path"},
		{[]string{"--user=u", "--", "true"}, "absolute path"},
		{[]string{"--user=u", "--bogus", "--", "/bin/true"}, "arguments"},
	} {
		if _, err := ParseArgs(tc.args); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: err %v, want %q", tc.args, err, tc.err)
		}
	}
}

func TestChildEnv(t *testing.T) {
	base := []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/root", "USER=root", "SYSTEMD_EXEC_PID=12",
		"NOTIFY_SOCKET=/run/x", "XPRA_OPT=1", "XDG_SESSION_TYPE=old"}
	a := account{name: "alice", home: "/home/alice", shell: "/bin/bash"}
	pamEnv := map[string]string{"XDG_SESSION_ID": "7", "XDG_RUNTIME_DIR": "/run/user/1000", "XDG_SESSION_TYPE": "x11"}
	got := childEnv(base, a, pamEnv)
	slices.Sort(got)
	want := []string{"HOME=/home/alice", "LANG=C.UTF-8", "LOGNAME=alice", "PATH=/usr/bin:/bin", "SHELL=/bin/bash",
		"USER=alice", "XDG_RUNTIME_DIR=/run/user/1000", "XDG_SESSION_ID=7", "XDG_SESSION_TYPE=x11", "XPRA_OPT=1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestMainRefusesBadArguments(t *testing.T) {
	if got := Main([]string{"--", "/bin/true"}); got != 2 {
		t.Errorf("Main without --user: %d, want 2", got)
	}
}
