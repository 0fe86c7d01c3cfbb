// SPDX-License-Identifier: GPL-2.0-or-later

package logscan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"testing"
)

// line is what the supervisor's slog text handler writes for msg and args.
func line(level slog.Level, msg string, args ...any) string {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})).Log(context.Background(), level, msg, args...)
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

func TestBad(t *testing.T) {
	var nilErr error
	for _, c := range []struct {
		name string
		line string
		bad  bool
	}{
		{"relay clean end", line(slog.LevelInfo, "relay worker ended", "worker", 7, "user", "lab", "peer", "127.0.0.1:1", "status", fmt.Sprint(nilErr)), false},
		{"relay clean end, nil dropped", line(slog.LevelInfo, "relay worker ended", "worker", 7, "user", "lab", "message_id", "079f0379076d4f049bac3605b8cb47d0", "duration_sec", "1.000"), false},
		{"relay exit 2", line(slog.LevelInfo, "relay worker ended", "worker", 7, "user", "lab", "peer", "127.0.0.1:1", "status", "exit status 2"), true},
		{"relay exit 2, audit record", line(slog.LevelInfo, "relay worker ended", "worker", 7, "message_id", "079f0379076d4f049bac3605b8cb47d0", "duration_sec", "1.000", "status", "exit status 2"), true},
		{"relay exit 1", line(slog.LevelInfo, "relay worker ended", "worker", 7, "status", "exit status 1"), true},
		{"relay killed", line(slog.LevelInfo, "relay worker ended", "worker", 7, "status", "signal: killed"), true},
		{"relay adopted (no status)", line(slog.LevelInfo, "relay worker ended", "worker", 7, "user", "lab", "adopted", true), false},
		{"transport clean end", line(slog.LevelDebug, "transport process ended", "status", "<nil>"), false},
		{"transport crash", line(slog.LevelDebug, "transport process ended", "status", "exit status 2"), true},
		{"pre-auth killed by the supervisor", line(slog.LevelDebug, "pre-auth process ended", "err", errors.New("signal: killed")), false},
		{"pre-auth exit 1", line(slog.LevelDebug, "pre-auth process ended", "err", errors.New("exit status 1")), true},
		{"pre-auth crash before a verdict", line(slog.LevelWarn, "pre-auth process died before a verdict: counted as a failed login", "cause", "exit status 2 (a Go fatal error: out of memory, or a crash)"), true},
		{"signal", line(slog.LevelWarn, "relay worker died of a signal", "pid", 9, "signal", "SIGSEGV"), true},
		{"sandbox", line(slog.LevelError, "pre-auth process killed by its sandbox (a forbidden system call; see the kernel log for which)", "pid", 9), true},
		{"recovered panic", line(slog.LevelError, "control connection panicked", "panic", "boom"), true},
		{"go panic", "panic: runtime error: index out of range [3] with length 2", true},
		{"go panic after another process's partial line", `time=x level=INFO msg="connecpanic: boom`, true},
		{"fatal error", "fatal error: concurrent map writes", true},
		{"goroutine trace", "goroutine 1 [running]:", true},
		{"signal trace", "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4]", true},
		{"ordinary warning", line(slog.LevelWarn, "hello over the pre-auth budget", "err", "too many items"), false},
		{"a word, not a panic", line(slog.LevelInfo, "no panic here", "note", "panicking is bad"), false},
		{"empty", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Bad(c.line)
			if c.bad != (len(got) == 1) {
				t.Fatalf("Bad(%q) = %q, want bad=%v", c.line, got, c.bad)
			}
		})
	}
}

func TestBadExpected(t *testing.T) {
	log := "a\npanic: boom\ngoroutine 1 [running]:\n" +
		line(slog.LevelInfo, "relay worker ended", "worker", 7, "status", "exit status 2") + "\nb\n"
	if got := Bad(log); len(got) != 3 {
		t.Fatalf("got %q, want the panic, its goroutine and the relay's end", got)
	}
	got := Bad(log, regexp.MustCompile(`panic: boom|goroutine \d+ \[running\]`))
	if len(got) != 1 || !regexp.MustCompile(`relay worker ended`).MatchString(got[0]) {
		t.Fatalf("with the panic expected: %q", got)
	}
	if got := Bad(log, regexp.MustCompile(`.`)); !slices.Equal(got, nil) {
		t.Fatalf("everything expected: %q", got)
	}
}
