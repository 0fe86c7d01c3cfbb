// SPDX-License-Identifier: GPL-2.0-or-later

package sandbox_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/buildlab"
)

// probe builds sandbox/internal/probe as the real binaries are built:
// without cgo (Landlock before ABI 8 needs AllThreadsSyscall).
func probe(t *testing.T) string {
	t.Helper()
	dir := buildlab.Dir(t, buildlab.Step{Env: []string{"CGO_ENABLED=0"}, Pkgs: []string{"./sandbox/internal/probe"}})
	return filepath.Join(dir, "probe")
}

// asUnprivileged runs cmd as nobody when the test is root: root's
// CAP_SYS_PTRACE would walk past what is being tested.
func asUnprivileged(cmd *exec.Cmd) {
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	}
}

func TestWorkloadSurvives(t *testing.T) {
	p := probe(t)
	// Not t.TempDir: its parent is 0700 and the probe runs as nobody.
	www, err := os.MkdirTemp("", "sandbox-www-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(www) })
	os.Chmod(www, 0o755)
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("<html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ kind, dir string }{
		{"preauth", www},
		{"transport", ""},
		{"control", ""},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			args := []string{"workload", tc.kind}
			if tc.dir != "" {
				args = append(args, tc.dir)
			}
			cmd := exec.Command(p, args...)
			asUnprivileged(cmd)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s under the %s sandbox: %v\n%s", "a Go workload", tc.kind, err, out)
			}
			if !strings.Contains(string(out), "ok\n") {
				t.Fatalf("no ok:\n%s", out)
			}
			if tc.dir != "" && landlockABI(string(out)) > 0 && !strings.Contains(string(out), "outside: EACCES") {
				t.Errorf("Landlock applied but a file outside the allowed directory was readable:\n%s", out)
			}
			t.Logf("%s", out)
		})
	}
}

// landlockABI reads the ABI the probe reported.
func landlockABI(out string) int {
	_, rest, ok := strings.Cut(out, "landlock ABI ")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(strings.Fields(rest)[0])
	return n
}

func TestForbiddenCallKills(t *testing.T) {
	p := probe(t)
	calls := []string{"ptrace", "kill", "execve", "fork", "open-write", "socket", "pidfd_open", "mprotect-exec", "setuid"}
	for _, kind := range []string{"preauth", "transport", "control"} {
		for _, call := range calls {
			t.Run(kind+"/"+call, func(t *testing.T) {
				cmd := exec.Command(p, "forbid", kind, call)
				asUnprivileged(cmd)
				out, err := cmd.CombinedOutput()
				if sig := signalOf(err); sig != syscall.SIGSYS {
					t.Fatalf("%s in the %s sandbox: want death by SIGSYS, got %v\n%s", call, kind, err, out)
				}
			})
		}
	}
}

func signalOf(err error) syscall.Signal {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}

// TestNonDumpable: a process of the same uid, not sandboxed itself
// (standing in for anything else running as the pre-auth user), cannot
// look into a sandboxed one; the same attacks on an unsandboxed target
// succeed, so the test can tell.
func TestNonDumpable(t *testing.T) {
	p := probe(t)
	attacks := []string{"ptrace", "pidfd_getfd", "process_vm_readv", "mem", "environ"}
	for _, target := range []string{"none", "preauth", "control"} {
		t.Run(target, func(t *testing.T) {
			hold := exec.Command(p, "hold", target)
			asUnprivileged(hold)
			out, err := hold.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := hold.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { hold.Process.Kill(); hold.Wait() }()
			if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
				t.Fatalf("target did not start: %q", line)
			}
			for _, a := range attacks {
				cmd := exec.Command(p, "attack", "none", strconv.Itoa(hold.Process.Pid), a)
				asUnprivileged(cmd)
				got, err := cmd.CombinedOutput()
				res := strings.TrimSpace(string(got))
				t.Logf("%s target, %s", target, res)
				if err != nil {
					t.Fatalf("attacker: %v: %s", err, got)
				}
				succeeded := strings.Contains(res, "SUCCEEDED")
				if target == "none" && !succeeded && a != "mem" {
					t.Errorf("the unsandboxed target resisted %s (%s): the test cannot tell", a, res)
				}
				if target != "none" && succeeded {
					t.Errorf("%s on a %s-sandboxed process of the same uid: %s", a, target, res)
				}
			}
		})
	}
}
