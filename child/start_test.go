// SPDX-License-Identifier: GPL-2.0-or-later

package child

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/threadtrim"
	"golang.org/x/sys/unix"
)

// TestStartsGoThroughStart: the packages the supervisor links start their
// children with Start, never cmd.Start: a child with a parent-death
// signal forked from a thread the supervisor's trimmer later ends would
// be killed (start.go).
func TestStartsGoThroughStart(t *testing.T) {
	root := filepath.Join("..")
	for _, dir := range []string{"supervisor", "pamauth", "launch"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if ok && sel.Sel.Name == "Start" && len(call.Args) == 0 {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "cmd" {
						t.Errorf("%s: cmd.Start(): use child.Start(cmd)", path)
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestStartRuns(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := Start(exec.Command("/nonexistent/x")); err == nil {
		t.Error("starting a missing program did not fail")
	}
}

// sleeper is a child with a parent-death signal, as the pre-auth
// processes are.
func sleeper() *exec.Cmd {
	cmd := exec.Command("/bin/sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// alive says whether the child is still running (not reaped, not a zombie).
func alive(t *testing.T, cmd *exec.Cmd) bool {
	t.Helper()
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	return info.Signo == 0
}

// startOnEndingThread starts cmd from a goroutine that returns locked, so
// that its thread ends (not the main thread: the runtime would wedge it).
func startOnEndingThread(cmd *exec.Cmd, mayRetry bool) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() && mayRetry {
			started <- startOnEndingThread(cmd, false) // cannot land here: locked to us
			runtime.UnlockOSThread()
			return
		}
		started <- cmd.Start() // returns locked: this thread ends
	}()
	return <-started
}

// TestStartSurvivesTrim: a child started with Start keeps running while
// the process ends its idle threads; the same child forked from a thread
// that then ends is killed by its parent-death signal (the hazard Start
// exists for).
func TestStartSurvivesTrim(t *testing.T) {
	kept := sleeper()
	if err := Start(kept); err != nil {
		t.Fatal(err)
	}
	defer func() { kept.Process.Kill(); kept.Wait() }()

	lost := sleeper()
	if err := startOnEndingThread(lost, true); err != nil {
		t.Fatal(err)
	}
	defer func() { lost.Process.Kill(); lost.Wait() }()

	// Threads to end, as after a load; then end them all.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			ts := unix.NsecToTimespec(int64(200 * time.Millisecond))
			unix.Nanosleep(&ts, nil)
		})
	}
	wg.Wait()
	if _, err := threadtrim.Trim(1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if !alive(t, kept) {
		t.Error("a child started with Start died when idle threads were ended")
	}
	if alive(t, lost) {
		t.Error("a child whose forking thread ended is still running: the parent-death hazard is not what start.go says")
	}
}
