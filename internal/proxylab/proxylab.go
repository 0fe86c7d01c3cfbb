// Package proxylab builds and runs our own binaries (xpra-proxy, its
// worker, xpra-probe) for end-to-end tests, the way a distribution would
// install them: in a directory every user may read, run by root, with the
// dedicated pre-auth user present.
package proxylab

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/buildlab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// PreauthUser is the system user pre-auth processes run as.
const PreauthUser = "xpra-proxy"

// ControlUser is the system user of the :proxy control process.
const ControlUser = "xpra-proxy-control"

// Build compiles the commands once per test binary and returns their
// directory.
func Build(t testing.TB) string {
	t.Helper()
	// As scripts/build-bin.sh and the packages build them: the exec'd
	// workers without cgo.
	return buildlab.Dir(t,
		buildlab.Step{Env: []string{"CGO_ENABLED=1"}, Pkgs: []string{"./cmd/xpra-proxy", "./cmd/xpra-probe"}},
		buildlab.Step{Env: []string{"CGO_ENABLED=0"}, Pkgs: []string{"./cmd/xpra-proxy-worker", "./cmd/xpra-proxy-preauth", "./cmd/xpra-proxy-control"}})
}

// EnsurePreauthUser creates the xpra-proxy and xpra-proxy-control system
// users, as the package's sysusers.d file does.
func EnsurePreauthUser(t testing.TB) {
	t.Helper()
	for _, name := range []string{PreauthUser, ControlUser} {
		if exec.Command("id", name).Run() == nil {
			continue
		}
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if err != nil && exec.Command("id", name).Run() != nil {
			t.Fatalf("useradd %s: %v: %s", name, err, out)
		}
	}
}

// Proxy is a running xpra-proxy.
type Proxy struct {
	Port    int
	Bin     string
	Control string // the supervisor's control socket (display :proxy in its directory)
	RunDir  string // the supervisor's run-dir (its registry of relays)
	cmd     *exec.Cmd
	log     *Buffer
	done    chan struct{}
}

// Start runs xpra-proxy as root on a loopback port with args, and stops
// it when the test ends.
func Start(t testing.TB, args ...string) *Proxy {
	t.Helper()
	return StartEnv(t, nil, args...)
}

// StartEnv is Start with more environment variables for the supervisor
// (e.g. the env auth module's secret).
func StartEnv(t testing.TB, env []string, args ...string) *Proxy {
	t.Helper()
	testenv.Root(t)
	bin := Build(t)
	EnsurePreauthUser(t)
	p := &Proxy{Port: xpralab.FreePort(t), Bin: bin, log: &Buffer{}}
	full := append([]string{fmt.Sprintf("--bind-tcp=127.0.0.1:%d", p.Port)}, args...)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--control-socket") }) {
		// Tests run many proxies at once: each gets its own :proxy socket.
		host, _ := os.Hostname()
		p.Control = filepath.Join(t.TempDir(), host+"-proxy")
		full = append(full, "--control-socket="+p.Control)
	}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--run-dir") }) {
		p.RunDir = filepath.Join(t.TempDir(), "run")
		full = append(full, "--run-dir="+p.RunDir)
	}
	p.cmd = exec.Command(filepath.Join(bin, "xpra-proxy"), full...)
	p.cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "XPRA_PROXY_DEBUG=1"}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	p.done = make(chan struct{})
	go func() { exited <- p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("xpra-proxy log:\n%s", p.Logs())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", p.Addr())
		if err == nil {
			c.Close()
			return p
		}
		select {
		case err := <-exited:
			t.Fatalf("xpra-proxy exited: %v\n%s", err, p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xpra-proxy not listening after 15s:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addr is the proxy's TCP address.
func (p *Proxy) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.Port) }

// URL is tcp://USERINFO@proxy/DISPLAY.
func (p *Proxy) URL(userinfo, display string) string {
	if userinfo != "" {
		userinfo += "@"
	}
	return fmt.Sprintf("tcp://%s%s/%s", userinfo, p.Addr(), strings.TrimPrefix(display, ":"))
}

// Logs returns what the proxy and its workers logged so far.
func (p *Proxy) Logs() string { return p.log.String() }

// Done is closed when the supervisor has exited.
func (p *Proxy) Done() <-chan struct{} { return p.done }

// Pid is the supervisor's pid.
func (p *Proxy) Pid() int { return p.cmd.Process.Pid }

// Buffer collects output written from other goroutines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
