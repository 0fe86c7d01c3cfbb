// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"bytes"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// startChild runs a real child the way startPreauth does (exec, a reaper
// goroutine), here /bin/sh ending as script says.
func startChild(t *testing.T, script string) *preauthProc {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &preauthProc{pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.status = cmd.Wait()
		close(p.done)
	}()
	return p
}

// A pre-auth process that dies abnormally before a verdict is a failed
// login for its source, logged as a warning with the cause; a clean end,
// one after a verdict, and one the supervisor killed are not.
func TestReapedAbnormalIsFailedLogin(t *testing.T) {
	tests := []struct {
		name    string
		script  string // how the child ends
		kill    bool   // the supervisor kills it (login time over)
		verdict bool   // the supervisor had denied it
		penalty bool
		cause   string
	}{
		{"killed by a signal", "kill -KILL $$", false, false, true, "killed by signal killed"},
		{"Go fatal error (out of memory)", "exit 2", false, false, true, "exit status 2"},
		{"other non-zero", "exit 1", false, false, true, "exit status 1"},
		{"clean exit", "exit 0", false, false, false, ""},
		{"crash after a verdict", "exit 2", false, true, false, ""},
		{"killed by the supervisor", "sleep 10", true, false, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Defaults()
			lim, err := limits.New(cfg.Limits(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			s := &Supervisor{cfg: cfg, log: log, limits: lim}
			p := startChild(t, tc.script)
			if tc.kill {
				time.Sleep(50 * time.Millisecond)
				p.kill()
			}
			<-p.done
			x := &exchange{s: s, log: log, peer: "192.0.2.7:40000", verdict: tc.verdict}
			s.reaped(p, x, log)
			err = lim.Check(peerAddr(x.peer))
			if got := err != nil; got != tc.penalty {
				t.Fatalf("penalized %v, want %v (%v); logs:\n%s", got, tc.penalty, err, logs.String())
			}
			var r *limits.Refusal
			if tc.penalty && (!errors.As(err, &r) || r.Reason != limits.ReasonPenalty) {
				t.Errorf("refusal %v is not a penalty", err)
			}
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "counted as a failed login")
			if warned != tc.penalty || (tc.penalty && !strings.Contains(logs.String(), tc.cause)) {
				t.Errorf("logs (want a warning: %v, cause %q):\n%s", tc.penalty, tc.cause, logs.String())
			}
		})
	}
}

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
