// SPDX-License-Identifier: GPL-2.0-or-later

// Package e2e runs our proxy between real xpra 3.1.3 clients and servers:
// the seed's walkthroughs, the privilege separation as /proc shows it, and
// hostile input. It needs root, xpra and Xvfb (CI installs them).
package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
)

const cleanPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// xpraClient runs the real xpra 3.1.3 client (as root, like an admin would).
func xpraClient(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "xpra", args...)
	cmd.Env = []string{"PATH=" + cleanPath, "HOME=/root", "LANG=C.UTF-8", "XDG_RUNTIME_DIR=/run/user/0"}
	cmd.Dir = "/"
	out, _ := cmd.CombinedOutput() // the exit code varies; the output says what happened
	return string(out)
}

func run(t *testing.T, o probe.Options) (*probe.Result, error) {
	t.Helper()
	o.Timeout = 30 * time.Second
	return probe.Run(context.Background(), o)
}

func refusal(err error) string {
	var de *conn.DisconnectError
	if errors.As(err, &de) {
		return strings.TrimSpace(de.Reason + " " + strings.Join(de.Details, " "))
	}
	return ""
}

// nameOf asks a server directly for its id: its session name (each test
// server gets its own with --session-name).
func nameOf(t *testing.T, s *xpralab.Server, userinfo ...string) string {
	t.Helper()
	res, err := run(t, probe.Options{URL: s.TCP(strings.Join(userinfo, "")), Request: "id"})
	if err != nil {
		t.Fatalf("id of %s: %v", s.Display, err)
	}
	name := res.ReplyCaps().Str("session-name", "")
	if name == "" {
		t.Fatalf("server %s has no session name", s.Display)
	}
	return name
}

// reached connects through the proxy and returns the session name of the
// server the proxy connected us to (its hello's "uuid" is per user, not
// per session).
func reached(t *testing.T, url string) (string, error) {
	t.Helper()
	res, err := run(t, probe.Options{URL: url, Request: probe.Connect})
	if err != nil {
		return "", err
	}
	if !res.ReplyCaps().Bool("proxy", false) {
		t.Errorf("the server hello came back without the proxy's identity")
	}
	return res.ReplyCaps().Str("session_name", ""), nil
}

func TestProxy(t *testing.T) {
	xpralab.Require(t)
	testenv.Command(t, "xvfb-run")
	servers := xpralab.StartAll(t, xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=lab-a"}},
		xpralab.Options{Args: []string{"--session-name=lab-b"}})
	a, b := servers[0], servers[1]
	user := a.User.Username
	uuidA, uuidB := nameOf(t, a), nameOf(t, b)
	groups, _ := a.User.GroupIds()

	// "Basic Usage": the client-named user's own sessions, one password;
	// a unix socket beside the TCP port, without authentication.
	sock := filepath.Join(xpralab.Dir(t), "proxy.sock")
	// Penalties off: the subtests fail logins on purpose and log in again at
	// once from the same address (TestLimitsUnderLoad covers penalties).
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--bind-unix="+sock, "--unix-auth=none", "--per-source-penalty=0")
	creds := user + ":secret"

	t.Run("version", func(t *testing.T) {
		res, err := run(t, probe.Options{URL: p.URL("", ""), Request: "version"})
		if err != nil || res.ReplyCaps().Str("version", "") != "3.1.3" {
			t.Fatalf("probe version: %v", err)
		}
		if out := xpraClient(t, 30*time.Second, "version", p.URL("", "")); !strings.Contains(out, "3.1.3") {
			t.Fatalf("xpra version:\n%s", out)
		}
	})
	t.Run("info", func(t *testing.T) {
		out := xpraClient(t, 30*time.Second, "info", p.URL(creds, ""))
		if !strings.Contains(out, "server.type=xpra-proxy") {
			t.Fatalf("xpra info:\n%s", out)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		_, err := run(t, probe.Options{URL: p.URL(user+":wrong", a.Display), Request: probe.Connect})
		if refusal(err) != "authentication failed" {
			t.Fatalf("want the refusal 'authentication failed', got %v", err)
		}
		out := xpraClient(t, 30*time.Second, "info", p.URL(user+":wrong", ""))
		if !strings.Contains(out, "authentication failed") {
			t.Fatalf("xpra info with a wrong password:\n%s", out)
		}
	})
	t.Run("sessions chosen by display", func(t *testing.T) {
		for _, c := range []struct {
			s    *xpralab.Server
			uuid string
		}{{a, uuidA}, {b, uuidB}} {
			got, err := reached(t, p.URL(creds, c.s.Display))
			if err != nil || got != c.uuid {
				t.Fatalf("/%s reached %q (%v), want %q", c.s.Display, got, err, c.uuid)
			}
		}
		_, err := reached(t, p.URL(creds, ""))
		if r := refusal(err); !strings.Contains(r, "please specify a display, more than one is available") {
			t.Fatalf("no display with two sessions: %q (%v)", r, err)
		}
		_, err = reached(t, p.URL(creds, ":9999"))
		if r := refusal(err); r != "session not found error display ':9999' not found" {
			t.Fatalf("unknown display: %q (%v)", r, err)
		}
	})
	t.Run("unix socket listener", func(t *testing.T) {
		res, err := run(t, probe.Options{URL: "socket://" + user + "@" + sock, Request: "info"})
		if err != nil || res.ReplyCaps().Str("server.type", "") != "xpra-proxy" {
			t.Fatalf("info over the proxy's unix socket: %v", err)
		}
	})
	t.Run("attach and confinement", func(t *testing.T) {
		c := startAttach(t, p.URL(creds, a.Display))
		defer c.stop()
		worker := findWorker(t, p.Pid(), "--relay")
		proclab.CheckConfined(t, worker, a.UID, a.GID, groups)
		// It keeps drawing: bytes keep flowing from the server for a while.
		time.Sleep(3 * time.Second)
		if c.disconnected() {
			t.Fatalf("the attached client was disconnected:\n%s", c.out)
		}
	})
	t.Run("pre-auth confinement", func(t *testing.T) {
		// A client that connects and sends one byte of a header keeps its
		// pre-auth process waiting: look at it. (One that sends nothing is
		// kept from the supervisor by TCP_DEFER_ACCEPT.)
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{'P'})
		// The one holding it got it from the spare started ahead, and
		// spares wait for the next connections: all must be confined.
		out, _ := exec.Command("id", "-u", proxylab.PreauthUser).Output()
		uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		out, _ = exec.Command("id", "-g", proxylab.PreauthUser).Output()
		gid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		var pres []proclab.Proc
		held := 0
		for range 100 {
			pres, held = findWorkers(t, p.Pid(), "--preauth", 1), 0
			for _, pre := range pres {
				if sockets(pre) == 2 { // its channel and the client (a spare has its channel only)
					held++
				}
			}
			if held > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if held != 1 {
			t.Errorf("%d of the pre-auth processes %v hold a connection, want 1", held, pres)
		}
		for _, pre := range pres {
			proclab.CheckConfined(t, pre, uid, gid, nil)
		}
	})
	t.Run("spares killed", func(t *testing.T) {
		// A spare that died while it waited (killed by an admin, the OOM
		// killer) is replaced: the next client is served all the same.
		killed := 0
		for _, pre := range findWorkers(t, p.Pid(), "--preauth", 2) {
			if sockets(pre) == 1 {
				if err := syscall.Kill(pre.PID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed++
			}
		}
		if killed == 0 {
			t.Fatal("no spare pre-auth process found")
		}
		time.Sleep(100 * time.Millisecond)
		res, err := run(t, probe.Options{URL: p.URL("", ""), Request: "version"})
		if err != nil || res.ReplyCaps().Str("version", "") != "3.1.3" {
			t.Fatalf("probe version after the spares were killed: %v", err)
		}
		res, err = run(t, probe.Options{URL: "socket://" + user + "@" + sock, Request: "info"})
		if err != nil || res.ReplyCaps().Str("server.type", "") != "xpra-proxy" {
			t.Fatalf("info over the unix socket after the spares were killed: %v", err)
		}
	})
}

// TestRemoteTargets is the seed's "Remote Hosts" walkthrough: a sqlite
// database made by xpra's own helper, and the same in a multifile, send
// users to sessions by URL (here the servers' TCP ports), with per-target
// options.
func TestRemoteTargets(t *testing.T) {
	xpralab.Require(t)
	py := testenv.PythonModules(t, "xpra.server.auth.sqlite_auth")
	// b asks for its own password: the proxy answers b's challenge with the
	// credentials in the target URL.
	servers := xpralab.StartAll(t, xpralab.Options{Args: []string{"--session-name=remote-a"}},
		xpralab.Options{Args: []string{"--session-name=remote-b", "--tcp-auth=password,value=remotepw"}})
	a, b := servers[0], servers[1]
	uuidA, uuidB := nameOf(t, a), nameOf(t, b, "x:remotepw")
	dir := xpralab.Dir(t)
	owner, group := a.User.Username, a.User.Username

	db := filepath.Join(dir, "xpra-auth.sdb")
	helper := "/usr/lib/python3/dist-packages/xpra/server/auth/sqlite_auth.py"
	for _, args := range [][]string{
		{db, "create"},
		{db, "add", "foo", "bar", owner, group, fmt.Sprintf("tcp://127.0.0.1:%d/", a.Port)},
		{db, "add", "moo", "cow", owner, group, fmt.Sprintf("tcp://x:remotepw@127.0.0.1:%d/", b.Port), "", "compression=0"},
	} {
		cmd := exec.Command(py, append([]string{helper}, args...)...)
		cmd.Env = []string{"PATH=" + cleanPath}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sqlite_auth.py %v: %v\n%s", args, err, out)
		}
	}
	// xpra's helper leaves the umask's 0644, which the proxy refuses.
	if err := os.Chmod(db, 0o600); err != nil {
		t.Fatal(err)
	}
	multi := filepath.Join(dir, "users.txt")
	os.WriteFile(multi, []byte(fmt.Sprintf("# user|password|uid|gid|displays|env|session options\nfoo|bar|%s|%s|tcp://127.0.0.1:%d/\nmoo|cow|%s|%s|tcp://x:remotepw@127.0.0.1:%d/||compression=0\n",
		owner, group, a.Port, owner, group, b.Port)), 0o600)

	for _, mod := range []string{"sqlite,filename=" + db, "multifile,filename=" + multi} {
		t.Run(strings.Split(mod, ",")[0], func(t *testing.T) {
			p := proxylab.Start(t, "--tcp-auth="+mod, "--per-source-penalty=0") // fails on purpose, then logs in at once
			if got, err := reached(t, p.URL("foo:bar", "")); err != nil || got != uuidA {
				t.Fatalf("foo reached %q (%v), want %q", got, err, uuidA)
			}
			if got, err := reached(t, p.URL("moo:cow", "")); err != nil || got != uuidB {
				t.Fatalf("moo reached %q (%v), want %q", got, err, uuidB)
			}
			if _, err := reached(t, p.URL("moo:bar", "")); refusal(err) != "authentication failed" {
				t.Fatalf("moo with foo's password: %v", err)
			}
			if out := xpraClient(t, 30*time.Second, "info", p.URL("foo:wrong", "")); !strings.Contains(out, "authentication failed") {
				t.Fatalf("real client, wrong password:\n%s", out)
			}
			// Nothing broke: the right password still works.
			if got, err := reached(t, p.URL("foo:bar", "")); err != nil || got != uuidA {
				t.Fatalf("after the failures foo reached %q (%v)", got, err)
			}
		})
	}

	t.Run("password-file", func(t *testing.T) {
		pw := filepath.Join(dir, "password.txt")
		os.WriteFile(pw, []byte("filesecret\n"), 0o600)
		p := proxylab.Start(t, "--tcp-auth=file", "--password-file="+pw)
		if got, err := reached(t, p.URL(owner+":filesecret", a.Display)); err != nil || got != uuidA {
			t.Fatalf("reached %q (%v), want %q", got, err, uuidA)
		}
		if _, err := reached(t, p.URL(owner+":nope", a.Display)); refusal(err) != "authentication failed" {
			t.Fatalf("wrong password: %v", err)
		}
	})
}
