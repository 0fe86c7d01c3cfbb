package namedfd

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The child half runs in a re-exec of the test binary, which starts with
// exactly the descriptors exec gave it.
func TestMain(m *testing.M) {
	if want := os.Getenv("NAMEDFD_CHILD"); want != "" {
		files, err := Take(strings.Split(want, ",")...)
		if err != nil {
			os.Stdout.WriteString("ERR " + err.Error())
			os.Exit(0)
		}
		for name, f := range files {
			os.Stdout.WriteString("OK " + name + "=" + f.Name() + "\n")
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
