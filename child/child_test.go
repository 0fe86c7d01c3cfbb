// SPDX-License-Identifier: GPL-2.0-or-later

package child

import (
	"bytes"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/sandbox"
)

// helperEnv makes the test binary act as a child (TestMain).
const helperEnv = "CHILD_TEST_HELPER"

var testSpec = Spec{Kind: "test", Fds: []string{"a"}, Optional: []string{"b"}, Env: []string{"LANG=C.UTF-8", "HOME=/"}, Runs: AsRoot}

func TestMain(m *testing.M) {
	if with, ok := os.LookupEnv(helperEnv); ok {
		var opt []string
		if with != "" {
			opt = strings.Split(with, ",")
		}
		fds, err := testSpec.Take(opt...)
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(3)
		}
		for _, name := range append(slices.Clone(testSpec.Fds), opt...) {
			b := make([]byte, 64)
			n, _ := fds[name].Read(b)
			os.Stdout.WriteString(name + "=" + string(b[:n]) + ";")
		}
		os.Stdout.WriteString("HOME=" + os.Getenv("HOME") + ";fds=" + os.Getenv(namedfd.EnvVar))
		os.Exit(0)
	}
	// As the supervisor does: what go test left open without
	// close-on-exec must not reach the helper.
	if err := namedfd.CloseOnExecAll(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

func pipeWith(t *testing.T, content string) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(content)
	w.Close()
	t.Cleanup(func() { r.Close() })
	return r
}

// TestRoundTrip: what Command passes is what Take takes, by name,
// optional ones included, and the spec's environment wins.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		fds  []string
	}{{"required only", []string{"a"}}, {"with optional", []string{"a", "b"}}} {
		t.Run(tc.name, func(t *testing.T) {
			fds := map[string]*os.File{}
			for _, n := range tc.fds {
				fds[n] = pipeWith(t, "content-of-"+n)
			}
			cmd, err := testSpec.Command(Launch{Path: os.Args[0], Fds: fds, Env: []string{"HOME=/elsewhere"}})
			if err != nil {
				t.Fatal(err)
			}
			cmd.Env = append(cmd.Env, helperEnv+"="+strings.Join(tc.fds[1:], ","))
			var out bytes.Buffer
			cmd.Stdout = &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("child: %v (%s)", err, out.String())
			}
			want := ""
			for _, n := range tc.fds {
				want += n + "=content-of-" + n + ";"
			}
			want += "HOME=/;fds=" // Take unsets the list
			if out.String() != want {
				t.Errorf("got %q, want %q", out.String(), want)
			}
		})
	}
}

func TestCommandRefusesBreaches(t *testing.T) {
	f := pipeWith(t, "")
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	for _, tc := range []struct {
		name string
		spec Spec
		l    Launch
	}{
		{"missing descriptor", Preauth, Launch{Cred: nobody, Fds: map[string]*os.File{}}},
		{"unknown descriptor", Preauth, Launch{Cred: nobody, Fds: map[string]*os.File{"ipc": f, "client": f}}},
		{"nil descriptor", Preauth, Launch{Cred: nobody, Fds: map[string]*os.File{"ipc": nil}}},
		{"root credential for an unprivileged child", Control, Launch{Cred: &syscall.Credential{}, Fds: map[string]*os.File{"control": f, "ipc": f}}},
		{"root group for an unprivileged child", Relay, Launch{Cred: &syscall.Credential{Uid: 1000}, Fds: map[string]*os.File{"client": f, "handover": f, "launch": f}}},
		{"a credential for the root child", PAM, Launch{Cred: nobody, Fds: map[string]*os.File{"pam": f}}},
		{"the launch names descriptors itself", PAM, Launch{Env: []string{namedfd.EnvVar + "=pam=9"}, Fds: map[string]*os.File{"pam": f}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.l.Path = "/bin/true"
			if cmd, err := tc.spec.Command(tc.l); err == nil {
				t.Errorf("accepted: %v %v", cmd.Args, cmd.Env)
			}
		})
	}
	if os.Geteuid() == 0 {
		if _, err := Preauth.Command(Launch{Path: "/bin/true", Fds: map[string]*os.File{"ipc": f}}); err == nil {
			t.Error("a root parent exec'd the pre-auth process without a credential")
		}
	}
}

func TestCommandSetsTheContract(t *testing.T) {
	f := pipeWith(t, "")
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	cmd, err := Relay.Command(Launch{Path: "/bin/true", Args: []string{"--peer=x"}, Cred: nobody,
		Fds: map[string]*os.File{"launch": f, "client": f, "session": f, "handover": f}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cmd.Args[1:]; !slices.Equal(got, []string{"--relay", "--peer=x"}) {
		t.Errorf("args %q", got)
	}
	if !slices.Contains(cmd.Env, namedfd.EnvVar+"=client=3,handover=4,launch=5,session=6") {
		t.Errorf("descriptors not in contract order: %q", cmd.Env)
	}
	a := cmd.SysProcAttr
	if a.Credential != nobody || !a.Setsid || a.Pdeathsig != 0 || cmd.Dir != "/" {
		t.Errorf("attributes %+v dir %q", a, cmd.Dir)
	}
	cmd, err = Preauth.Command(Launch{Path: "/bin/true", Cred: nobody, Fds: map[string]*os.File{"ipc": f}})
	if err != nil {
		t.Fatal(err)
	}
	if cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Error("a pre-auth process must die with its supervisor")
	}
}

// TestSandboxNames: every sandbox a spec names exists, and every process
// kind that reads unauthenticated bytes names one.
func TestSandboxNames(t *testing.T) {
	for _, s := range All {
		if s.Sandbox == "" {
			continue
		}
		if _, err := sandbox.Rules(sandbox.Kind(s.Sandbox), sandbox.Options{}); err != nil {
			t.Errorf("%s: %v", s.Kind, err)
		}
	}
	for _, s := range []*Spec{&Preauth, &Control, &Metrics} {
		if s.Sandbox == "" {
			t.Errorf("%s reads unauthenticated bytes but has no sandbox", s.Kind)
		}
	}
}

// TestJournalStream: a child writing to our stderr is told it is the
// journal's stream (its logger then checks the device and inode); one
// given another stderr is not.
func TestJournalStream(t *testing.T) {
	t.Setenv(journalStream, "8:1234")
	f := pipeWith(t, "")
	for _, tc := range []struct {
		name   string
		stderr io.Writer
		want   bool
	}{
		{"inherited stderr", nil, true},
		{"its own stderr", io.Discard, false},
	} {
		cmd, err := PAM.Command(Launch{Path: "/bin/true", Fds: map[string]*os.File{"pam": f}, Stderr: tc.stderr})
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Contains(cmd.Env, journalStream+"=8:1234"); got != tc.want {
			t.Errorf("%s: JOURNAL_STREAM passed: %v, want %v (%q)", tc.name, got, tc.want, cmd.Env)
		}
	}
}
