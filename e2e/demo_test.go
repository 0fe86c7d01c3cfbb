// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// TestDemo runs scripts/demo.sh as the README tells a newcomer to, and
// interrupts it at each stage as a newcomer would (Ctrl-C while it installs,
// builds, starts the session, starts the proxy, serves; a SIGTERM to the
// script alone; Ctrl-C after its proxy has died): every time, nothing of the
// demo's may be left running or on disk (its session and its files, proxy,
// key, password), and the next run works.
func TestDemo(t *testing.T) {
	testenv.Root(t)
	testenv.Command(t, "xpra")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// What was there before the whole test (an older demo's, cut short) is
	// not this test's; taken once, so a subtest's late leftover is never
	// excused by the next one.
	before := demoLeftovers()
	for _, stop := range []struct {
		name   string
		after  string // the line of the demo's output after which it is stopped
		how    func(t *testing.T, demo int)
		status int // the exit status the demo's trap gives
	}{
		{"Ctrl-C while it installs", "installing what the demo needs", ctrlC, 130},
		{"Ctrl-C while it builds", "building the programs into bin/", ctrlC, 130},
		{"Ctrl-C while the session starts", "starting a real xpra", ctrlC, 130},
		{"Ctrl-C while the proxy starts", "starting xpra-proxy", ctrlC, 130},
		{"Ctrl-C while it serves", "Ctrl-C stops it.", ctrlC, 130},
		{"SIGTERM to the script alone while it serves", "Ctrl-C stops it.", func(t *testing.T, demo int) {
			_ = syscall.Kill(demo, syscall.SIGTERM)
		}, 143},
		{"Ctrl-C after its proxy died", "Ctrl-C stops it.", func(t *testing.T, demo int) {
			// The case: a cleanup under set -e stopped at the
			// failing kill of a proxy already gone.
			proxies := demoProxies()
			if len(proxies) == 0 {
				t.Errorf("no demo proxy running to kill")
			}
			for _, p := range proxies {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			time.Sleep(time.Second)
			ctrlC(t, demo)
		}, 130},
	} {
		t.Run(stop.name, func(t *testing.T) {
			out, status := runDemo(t, root, stop.after, stop.how)
			if status != stop.status {
				t.Errorf("exit status %d, want %d (its trap's)", status, stop.status)
			}
			checkNothingLeft(t, out, before...)
		})
	}
	t.Run("a rerun", func(t *testing.T) {
		out, _ := runDemo(t, root, "", nil)
		if !strings.Contains(out, "the session is live behind the proxy") || !strings.Contains(out, "server.type=xpra-proxy") {
			t.Fatalf("the demo did not show the session through the proxy:\n%s", out)
		}
		// Loopback unless told otherwise, and a password of its own, printed.
		if !strings.Contains(out, "starting xpra-proxy on 127.0.0.1:14650") {
			t.Errorf("the demo does not listen on 127.0.0.1:14650 by default:\n%s", out)
		}
		if !regexp.MustCompile(`user xpra-demo, password [A-Za-z0-9]{16,}\n`).MatchString(out) {
			t.Errorf("the demo prints no random password:\n%s", out)
		}
		checkNothingLeft(t, out)
	})
}

// ctrlC sends SIGINT as a terminal's Ctrl-C does: to the whole group.
func ctrlC(t *testing.T, demo int) { _ = syscall.Kill(-demo, syscall.SIGINT) }

// demoProxies are the demo's supervisors.
func demoProxies() []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "--bind-tcp=127.0.0.1:14650") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			pids = append(pids, pid)
		}
	}
	return pids
}

// runDemo runs the demo (--once when after is empty, else until that line,
// then stops it with how) and returns its output and exit status.
func runDemo(t *testing.T, root, after string, how func(*testing.T, int)) (string, int) {
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
	stopped := false
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if after != "" && !stopped && strings.Contains(sc.Text(), after) {
			stopped = true
			how(t, cmd.Process.Pid)
		}
	}
	err = cmd.Wait()
	if after == "" && err != nil {
		t.Fatalf("demo --once: %v\n%s", err, out.String())
	}
	if after != "" && !stopped {
		t.Fatalf("the demo never printed %q (exit %v):\n%s", after, err, out.String())
	}
	if !strings.Contains(out.String(), "demo stopped") {
		t.Errorf("the demo's clean-up did not run (exit %v):\n%s", err, out.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// checkNothingLeft: no process of the demo's, no temporary directory with
// its key or password.
// What was there before the run (an earlier demo of an older version, cut
// short before this one got as far as its session) is not this run's.
func checkNothingLeft(t *testing.T, out string, before ...string) {
	t.Helper()
	if len(before) > 0 {
		t.Logf("there before this run: %v", before)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var left []string
		for _, l := range demoLeftovers() {
			if !slices.Contains(before, l) {
				left = append(left, l)
			}
		}
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
	// Its key, certificate and password, the XDG overlay; below, the
	// session's sockets and log. (Not /tmp/.X140-lock: other tests' Xvfbs
	// (xvfb-run -a) may hold display 140, and a stale lock is harmless: the
	// demo removes one whose pid is dead before it starts.)
	left, _ = filepath.Glob("/tmp/xpra-demo*")
	if u, err := user.Lookup("xpra-demo"); err == nil {
		if _, err := os.Stat("/run/user/" + u.Uid + "/xpra"); err == nil {
			left = append(left, "/run/user/"+u.Uid+"/xpra")
		}
		// No process of the demo's user.
		procs, _ := filepath.Glob("/proc/[0-9]*/status")
		for _, p := range procs {
			b, _ := os.ReadFile(p)
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && f[1] == u.Uid {
					cl, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
					left = append(left, filepath.Base(filepath.Dir(p))+" (user xpra-demo): "+strings.ReplaceAll(string(cl), "\x00", " "))
				}
			}
		}
	}
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
