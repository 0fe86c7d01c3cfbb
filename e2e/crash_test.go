// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"debug/buildinfo"
	"errors"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/crashhook"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// hasTag reports whether prog was built with the build tag.
func hasTag(t *testing.T, prog, tag string) bool {
	t.Helper()
	info, err := buildinfo.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" && slices.Contains(strings.Split(s.Value, ","), tag) {
			return true
		}
	}
	return false
}

// TestInjectedPanics makes a pre-auth process and then a relay panic
// (internal/crashhook, in a build with its tag) while another client stays
// connected through the proxy. The log scan every e2e test ends with
// (internal/logscan through proxylab) must name each panic and each bad
// exit; the supervisor must survive both, log them, and leave the other
// connection and new ones alone.
func TestInjectedPanics(t *testing.T) {
	xpralab.Require(t)
	testenv.Command(t, "xvfb-run")
	// The programs every other test runs are built as the packages build
	// them, without the hook; these have it.
	plain, hooked := proxylab.Build(t), proxylab.BuildTags(t, crashhook.Tag)
	for _, prog := range []string{"xpra-proxy-preauth", "xpra-proxy-worker"} {
		if hasTag(t, filepath.Join(plain, prog), crashhook.Tag) {
			t.Fatalf("the ordinary %s has the %s tag", prog, crashhook.Tag)
		}
		if !hasTag(t, filepath.Join(hooked, prog), crashhook.Tag) {
			t.Fatalf("the hooked %s lacks the %s tag", prog, crashhook.Tag)
		}
	}
	s := xpralab.Start(t, xpralab.Options{Args: []string{"--session-name=crash-lab"}})
	p := proxylab.StartWith(t, proxylab.Options{Bin: hooked},
		"--tcp-auth=password,value=secret", "--per-source-penalty=0")
	creds := s.User.Username + ":secret"

	// A client that stays connected through both crashes.
	_, held, err := probe.Open(context.Background(), probe.Options{URL: p.URL(creds, s.Display), Request: probe.Connect, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("the held connection: %v", err)
	}
	defer held.Close()
	heldRelay := findWorker(t, p.Pid(), "--relay").PID

	if _, err := run(t, probe.Options{URL: p.URL("", s.Display), Username: crashhook.PreauthUser, Request: probe.Connect}); err == nil {
		t.Fatal("a connection whose pre-auth process panicked got an answer")
	}
	if _, err := run(t, probe.Options{URL: p.URL(creds, crashhook.RelayDisplay), Request: probe.Connect}); err == nil {
		t.Fatal("a connection whose relay panicked got an answer")
	}

	// The scan names the panics, their stacks and the supervisor's lines
	// for the two bad ends.
	want := []string{
		`panic: crashhook: injected pre-auth panic`,
		`panic: crashhook: injected relay panic`,
		`goroutine \d+ \[running\]:`,
		`pre-auth process died before a verdict.*exit status 2`,
		`msg="relay worker ended".*status="exit status 2"`,
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		bad := strings.Join(p.Unexpected(), "\n")
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return regexp.MustCompile(w).MatchString(bad) })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log scan did not find %q; it found:\n%s", missing, bad)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The supervisor lives and serves: a new connection reaches the session.
	select {
	case <-p.Done():
		t.Fatal("the supervisor exited")
	default:
	}
	if err := syscall.Kill(p.Pid(), 0); err != nil {
		t.Fatalf("the supervisor: %v", err)
	}
	if got, err := reached(t, p.URL(creds, s.Display)); err != nil || got != "crash-lab" {
		t.Fatalf("a connection after the crashes reached %q: %v", got, err)
	}
	// The held connection is untouched: its relay runs, and the socket is
	// open (the server's pings, or nothing, until the deadline; no EOF).
	if err := syscall.Kill(heldRelay, 0); err != nil {
		t.Fatalf("the held connection's relay %d: %v", heldRelay, err)
	}
	held.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64<<10)
	for {
		_, err := held.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		if err != nil {
			t.Fatalf("the held connection: %v", err)
		}
	}

	// What this test provoked is declared; nothing else may be left.
	for _, w := range want {
		p.ExpectLog(w)
	}
	// The rest of a panic's trace: its frames, and the runtime's exit
	// line, carry no marker of their own; only the lines above are bad.
	if rest := p.Unexpected(); len(rest) != 0 {
		t.Fatalf("unexpected crash lines besides the injected ones:\n%s", strings.Join(rest, "\n"))
	}
}
