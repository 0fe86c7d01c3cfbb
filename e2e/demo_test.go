// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// TestDemo runs scripts/demo.sh as the README tells a newcomer to, and
// interrupts it at each stage as a newcomer would (Ctrl-C while the session
// starts, while the proxy starts, while it serves): every time, nothing of
// the demo's may be left running or on disk (its session, proxy, key), and
// the next run works.
func TestDemo(t *testing.T) {
	testenv.Root(t)
	testenv.Command(t, "xpra")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, stop := range []struct {
		name  string
		after string // the line of the demo's output after which it gets SIGINT
	}{
		{"while the session starts", "starting a real xpra"},
		{"while the proxy starts", "starting xpra-proxy"},
		{"while it serves", "Ctrl-C stops it."},
	} {
		t.Run("interrupted "+stop.name, func(t *testing.T) {
			out := runDemo(t, root, stop.after)
			checkNothingLeft(t, out)
		})
	}
	t.Run("a rerun", func(t *testing.T) {
		out := runDemo(t, root, "")
		if !strings.Contains(out, "the session is live behind the proxy") || !strings.Contains(out, "server.type=xpra-proxy") {
			t.Fatalf("the demo did not show the session through the proxy:\n%s", out)
		}
		checkNothingLeft(t, out)
	})
}

// runDemo runs the demo (--once when after is empty, else until that line,
// then SIGINT as a terminal's Ctrl-C sends it: to the whole group) and
// returns its output.
func runDemo(t *testing.T, root, after string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"scripts/demo.sh"}
	if after == "" {
		args = append(args, "--once")
	}
	cmd := exec.CommandContext(ctx, "bash", args...)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var out strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if after != "" && strings.Contains(sc.Text(), after) {
			// Ctrl-C: the terminal signals the foreground group.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		}
	}
	err = cmd.Wait()
	if after == "" && err != nil {
		t.Fatalf("demo --once: %v\n%s", err, out.String())
	}
	if after != "" && !strings.Contains(out.String(), after) {
		t.Fatalf("the demo never printed %q (exit %v):\n%s", after, err, out.String())
	}
	if !strings.Contains(out.String(), "demo stopped") {
		t.Errorf("the demo's clean-up did not run (exit %v):\n%s", err, out.String())
	}
	return out.String()
}

// checkNothingLeft: no process of the demo's, no temporary directory with
// its key or password.
func checkNothingLeft(t *testing.T, out string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := demoLeftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %v\ndemo output:\n%s", left, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func demoLeftovers() []string {
	var left []string
	dirs, _ := filepath.Glob("/tmp/xpra-demo*")
	left = append(left, dirs...)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, "xpra-demo") || strings.Contains(cl, ":14650") || strings.Contains(cl, "scripts/demo.sh") ||
			(strings.Contains(cl, "xpra") && strings.Contains(cl, ":140 ")) {
			left = append(left, filepath.Base(filepath.Dir(p))+": "+cl)
		}
	}
	return left
}
