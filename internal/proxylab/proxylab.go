// SPDX-License-Identifier: GPL-2.0-or-later

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
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/buildlab"
	"github.com/xpra-proxy/xpra-proxy/internal/logscan"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// PreauthUser is the system user pre-auth processes run as.
const PreauthUser = "xpra-proxy"

// ControlUser is the system user of the :proxy control process.
const ControlUser = "xpra-proxy-control"

// LDAPUser is the system user of the ldap module's helper.
const LDAPUser = "xpra-proxy-ldap"

// DirectoryUser is the system user of the shared directory's helper.
const DirectoryUser = "xpra-proxy-directory"

// Build compiles the commands once per test binary and returns their
// directory.
func Build(t testing.TB) string {
	t.Helper()
	return buildlab.Dir(t, steps()...)
}

// BuildTags is Build with build tags (e.g. crashhook.Tag), into a
// directory of its own.
func BuildTags(t testing.TB, tags string) string {
	t.Helper()
	return buildlab.Dir(t, steps("-tags="+tags)...)
}

// CoverDirEnv names the directory (scripts/coverage.sh sets it) where the
// programs the e2e tests run write their coverage counters: when it is
// set they are built with -cover and the supervisor gets it as GOCOVERDIR.
// Only the supervisor's counters are collected: the processes it execs
// get a clean environment and a sandbox, so they are built as usual.
const CoverDirEnv = "XPRA_PROXY_COVERDIR"

// steps build the programs as scripts/build-bin.sh and the packages do:
// the exec'd workers without cgo.
func steps(goflags ...string) []buildlab.Step {
	supervisor := goflags
	if os.Getenv(CoverDirEnv) != "" {
		supervisor = append(slices.Clone(goflags), "-cover", "-coverpkg=github.com/xpra-proxy/xpra-proxy/...")
	}
	env := func(flags []string) []string {
		if len(flags) == 0 {
			return nil
		}
		return []string{"GOFLAGS=" + strings.Join(flags, " ")}
	}
	return []buildlab.Step{
		{Env: append([]string{"CGO_ENABLED=1"}, env(supervisor)...), Pkgs: []string{"./cmd/xpra-proxy"}},
		{Env: append([]string{"CGO_ENABLED=1"}, env(goflags)...), Pkgs: []string{"./cmd/xpra-probe"}},
		{Env: append([]string{"CGO_ENABLED=0"}, env(goflags)...), Pkgs: []string{"./cmd/xpra-proxy-worker", "./cmd/xpra-proxy-preauth", "./cmd/xpra-proxy-control", "./cmd/xpra-proxy-metrics", "./cmd/xpra-proxy-ldap", "./cmd/xpra-proxy-directory"}},
	}
}

// EnsurePreauthUser creates the xpra-proxy, xpra-proxy-control,
// xpra-proxy-ldap and xpra-proxy-directory system users, as the package's sysusers.d file does.
func EnsurePreauthUser(t testing.TB) {
	t.Helper()
	for _, name := range []string{PreauthUser, ControlUser, LDAPUser, DirectoryUser} {
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

	mu       sync.Mutex
	expected []*regexp.Regexp // crash lines the test provokes (ExpectLog)
}

// Options are Start's less common settings.
type Options struct {
	Env []string // more environment variables for the supervisor
	// Bin is the directory of the programs (Build's when empty), e.g.
	// binaries built with a test-only tag.
	Bin string
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
	return StartWith(t, Options{Env: env}, args...)
}

// StartWith is Start with Options.
//
// When the test ends the supervisor is stopped (SIGINT) and everything
// it and its children logged is scanned (package logscan): a panic, a
// fatal error, a child that exited non-zero or died of a signal, or a
// supervisor that did not exit cleanly fails the test, naming the line,
// unless the test declared it with ExpectLog.
func StartWith(t testing.TB, o Options, args ...string) *Proxy {
	t.Helper()
	testenv.Root(t)
	bin := o.Bin
	if bin == "" {
		bin = Build(t)
	}
	env := o.Env
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
	if dir := os.Getenv(CoverDirEnv); dir != "" {
		p.cmd.Env = append(p.cmd.Env, "GOCOVERDIR="+dir)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	p.done = make(chan struct{})
	go func() { exited <- p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		var end string
		select {
		case err := <-exited:
			if err != nil {
				end = fmt.Sprintf("xpra-proxy (the supervisor) exited: %v", err)
			}
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-exited
			end = "xpra-proxy (the supervisor) did not stop within 10 s of SIGINT: killed"
		}
		bad := p.Unexpected()
		if end != "" && !p.isExpected(end) {
			bad = append(bad, end)
		}
		for i, line := range bad {
			if i == 20 {
				t.Errorf("... and %d more such lines", len(bad)-i)
				break
			}
			t.Errorf("our processes logged a crash or a bad end the test does not expect:\n%s", line)
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
			exited <- err // for the clean-up, which waits for it too
			t.Fatalf("xpra-proxy exited: %v\n%s", err, p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xpra-proxy not listening after 15s:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ExpectLog declares the crash or bad-end lines that match pattern (a
// regexp) as what the test provokes: they do not fail it.
func (p *Proxy) ExpectLog(pattern string) {
	re := regexp.MustCompile(pattern)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expected = append(p.expected, re)
}

// Unexpected returns the lines logged so far that show a crash or a
// child's bad end, less those ExpectLog declared: what the end of the
// test fails on.
func (p *Proxy) Unexpected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return logscan.Bad(p.Logs(), p.expected...)
}

func (p *Proxy) isExpected(line string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.ContainsFunc(p.expected, func(re *regexp.Regexp) bool { return re.MatchString(line) })
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
