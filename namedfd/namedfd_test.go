// SPDX-License-Identifier: GPL-2.0-or-later

package namedfd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// The child half runs in a re-exec of the test binary, which starts with
// exactly the descriptors exec gave it.
func TestMain(m *testing.M) {
	if want := os.Getenv("NAMEDFD_CHILD"); want != "" {
		take := Take
		if os.Getenv("NAMEDFD_UNPRIVILEGED") != "" {
			take = TakeUnprivileged
		}
		files, err := take(strings.Split(want, ",")...)
		if err != nil {
			os.Stdout.WriteString("ERR " + err.Error())
			os.Exit(0)
		}
		for name, f := range files {
			os.Stdout.WriteString("OK " + name + "=" + f.Name() + "\n")
		}
		status, _ := os.ReadFile("/proc/self/status")
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "NoNewPrivs:") {
				os.Stdout.WriteString(strings.Join(strings.Fields(line), " ") + "\n")
			}
		}
		os.Exit(0)
	}
	// The test binary may inherit descriptors without close-on-exec from
	// whatever started it; a supervisor does the same at start-up.
	if err := CloseOnExecAll(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

func child(t *testing.T, want string, fds ...Fd) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"NAMEDFD_CHILD=" + want}
	Attach(cmd, fds...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestTake(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if out := child(t, "client,ipc", Fd{"client", r}, Fd{"ipc", w}); !strings.Contains(out, "OK client") || !strings.Contains(out, "OK ipc") {
		t.Fatalf("child: %s", out)
	}
	if out := child(t, "client,handover", Fd{"client", r}, Fd{"ipc", w}); !strings.Contains(out, `"handover" was not passed`) {
		t.Fatalf("missing name: %s", out)
	}
	if out := child(t, "client", Fd{"client", r}, Fd{"ipc", w}); !strings.Contains(out, "unexpected descriptors") {
		t.Fatalf("extra name: %s", out)
	}
}

// A descriptor passed without a name (a leak) is caught.
func TestTakeCatchesLeaks(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"NAMEDFD_CHILD=client"}
	Attach(cmd, Fd{"client", r})
	cmd.ExtraFiles = append(cmd.ExtraFiles, w) // fd 4, unnamed
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "descriptor 4 is open but was not passed by name") {
		t.Fatalf("leak not caught: %s", out)
	}
}

// TakeUnprivileged sets no_new_privs and refuses root, after the
// descriptor check.
func TestTakeUnprivileged(t *testing.T) {
	testenv.Root(t)
	// A copy of the test binary that nobody may run (the build cache is
	// root's alone).
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "namedfd.test")
	raw, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	tests := []struct {
		name string
		cred *syscall.Credential
		want string
	}{
		{"as nobody", &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}, "OK ipc=ipc\nNoNewPrivs: 1"},
		{"as root", nil, "ERR namedfd: refusing to run as root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^$")
			cmd.Dir = "/"
			cmd.Env = []string{"NAMEDFD_CHILD=ipc", "NAMEDFD_UNPRIVILEGED=1"}
			Attach(cmd, Fd{"ipc", w})
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tt.cred}
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("child said %q, want %q", out, tt.want)
			}
		})
	}
	// The descriptor check still comes first.
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = []string{"NAMEDFD_CHILD=client", "NAMEDFD_UNPRIVILEGED=1"}
	Attach(cmd, Fd{"client", r})
	cmd.ExtraFiles = append(cmd.ExtraFiles, w)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "not passed by name") {
		t.Fatalf("leak not caught: %s", out)
	}
}
