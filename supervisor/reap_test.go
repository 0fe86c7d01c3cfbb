package supervisor

import (
	"bytes"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
)

// TestLogSignalled: a child's death by a signal is logged with the
// signal's name, SIGSYS as its sandbox killing it; a clean exit is not.
func TestLogSignalled(t *testing.T) {
	for _, tc := range []struct {
		script, want string
	}{
		{"kill -s SYS $$", `level=ERROR msg="pre-auth process killed by its sandbox`},
		{"kill -s SEGV $$", `level=WARN msg="pre-auth process died of a signal" pid=`},
		{"kill -s KILL $$", `level=INFO msg="pre-auth process killed" pid=`},
		{"exit 3", ""},
	} {
		t.Run(tc.script, func(t *testing.T) {
			var buf bytes.Buffer
			s := &Supervisor{log: slog.New(slog.NewTextHandler(&buf, nil))}
			cmd := exec.Command("/bin/sh", "-c", tc.script)
			err := cmd.Run()
			s.logSignalled("pre-auth process", cmd.Process.Pid, err)
			got := buf.String()
			if tc.want == "" {
				if got != "" {
					t.Errorf("logged %q for a plain exit", got)
				}
				return
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("logged %q, want %q", got, tc.want)
			}
			sig := strings.Fields(tc.script)[2]
			if !strings.Contains(got, "signal=SIG"+sig) {
				t.Errorf("logged %q, want the signal's name SIG%s", got, sig)
			}
		})
	}
}
