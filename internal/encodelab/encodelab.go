// SPDX-License-Identifier: GPL-2.0-or-later

// Package encodelab builds and runs the real shared encoder worker
// (cmd/xpra-proxy-encode) for tests outside encode/: started by root it
// drops to its own system user, as deployed; started by anyone else it
// serves as that user.
package encodelab

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/buildlab"
	"github.com/xpra-proxy/xpra-proxy/internal/logscan"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
)

// UserName is the system user the worker runs as when started by root:
// the supervisor's default encoder-user.
const UserName = "xpra-proxy-encode"

// Build compiles the worker once per test binary into a directory every
// user may read (it re-executes itself after dropping root).
func Build(t testing.TB) string {
	t.Helper()
	return buildlab.Program(t, "./cmd/xpra-proxy-encode")
}

// EnsureUser creates the worker's system user, as its package would.
func EnsureUser(t testing.TB) int {
	t.Helper()
	if exec.Command("id", UserName).Run() != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/usr/sbin/nologin", UserName).CombinedOutput()
		if err != nil && exec.Command("id", UserName).Run() != nil {
			t.Fatalf("useradd %s: %v: %s", UserName, err, out)
		}
	}
	u, err := user.Lookup(UserName)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uid
}

// Worker is a running encoder worker.
type Worker struct {
	Socket string
	// XpraSocket serves xpra's own encoder protocol (6.4+ servers'
	// --video-encoders=remote:uri=socket://…), beside Socket.
	XpraSocket string
	UID        int // the uid serving the socket
	bin        string
	args       []string
	mu         sync.Mutex
	cmd        *exec.Cmd
	log        *proxylab.Buffer
	past       strings.Builder // the logs of the processes before a Restart
	exited     chan struct{}
}

// Start runs the worker on a socket of its own with extra flags
// (e.g. --allow-uids, --max-cpu) and stops it when the test ends.
func Start(t testing.TB, extra ...string) *Worker {
	t.Helper()
	bin := Build(t)
	dir, err := os.MkdirTemp("", "xpra-proxy-encode-run-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	w := &Worker{Socket: filepath.Join(dir, "run", "socket"), XpraSocket: filepath.Join(dir, "run", "xpra"),
		UID: os.Getuid(), bin: bin}
	w.args = append([]string{"--socket=" + w.Socket, "--xpra-socket=" + w.XpraSocket}, extra...)
	if os.Getuid() == 0 {
		w.UID = EnsureUser(t)
		w.args = append(w.args, "--user="+UserName)
	}
	w.Restart(t)
	t.Cleanup(func() {
		w.Stop()
		// As proxylab does for the proxy: a panic or fatal error of the
		// encoder fails the test that saw it.
		for _, line := range logscan.Bad(w.allLogs()) {
			t.Errorf("the encoder worker logged a crash:\n%s", line)
		}
	})
	return w
}

func (w *Worker) allLogs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.past.String() + w.log.String()
}

// Restart starts the worker again (after Kill) and waits until it serves.
func (w *Worker) Restart(t testing.TB) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.log != nil {
		w.past.WriteString(w.log.String())
	}
	w.log = &proxylab.Buffer{}
	w.cmd = exec.Command(w.bin, w.args...)
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	w.exited = exited
	go func(c *exec.Cmd) { c.Wait(); close(exited) }(w.cmd)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(w.log.String(), "encoder: serving") {
		select {
		case <-exited:
			t.Fatalf("encoder worker exited:\n%s", w.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("encoder worker not serving after 20s:\n%s", w.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the worker at once (SIGKILL), as a crash would.
func (w *Worker) Kill() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd != nil && w.cmd.Process != nil {
		w.cmd.Process.Kill()
		<-w.exited
	}
}

// Stop ends the worker.
func (w *Worker) Stop() { w.Kill() }

// Logs is what the current process logged.
func (w *Worker) Logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.String()
}
