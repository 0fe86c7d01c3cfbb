// SPDX-License-Identifier: GPL-2.0-or-later

//go:build testbed

// Tests against a real systemd (PID 1), dbus, logind and PAM. They run inside
// the systemd-nspawn testbed of ../shared/lab/systemd: scripts/testbed-tests.sh
// builds this file (go test -c -tags testbed), boots the testbed and runs the
// binary there. Elsewhere they call testenv.Missing.
//
// The test binary plays three parts: the tests; the session leader (started
// through a symlink named xpra-proxy-session, so the real leader code runs
// as systemd starts it); and a stand-in supervisor in a hardened
// xpra-proxy.service, to restart under a running session.
package logind_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/logind/leader"
)

const (
	testUser   = "xpst"        // made in the testbed
	extraGroup = "xpstextra"   // one of its supplementary groups
	expired    = "xpstexpired" // an account PAM refuses
	runDir     = "/run/xpra-proxy-test"
	roleEnv    = "XPRA_PROXY_TEST_ROLE"
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "xpra-proxy-session" {
		os.Exit(leader.Main(os.Args[1:]))
	}
	if os.Getenv(roleEnv) == "supervisor" {
		os.Exit(fakeSupervisor())
	}
	os.Exit(m.Run())
}

// The PAM service of the proxy's sessions: packaging's file, which
// scripts/testbed-tests.sh puts beside this binary; this one where there is
// none (its session part).
const fallbackPAM = `account  include  common-account
session  required pam_loginuid.so
session  include  common-session
`

// packaged reads a file scripts/testbed-tests.sh copied from packaging/.
func packaged(name string) (string, bool) {
	self, err := os.Executable()
	if err != nil {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(self), "packaging", name))
	return string(b), err == nil
}

var (
	setupOnce sync.Once
	setupErr  error
)

// testbed skips (fails under CI) outside the testbed, and prepares it once:
// the PAM service, KillUserProcesses=yes, the users and the leader.
func testbed(t *testing.T) (*logind.Conn, string) {
	t.Helper()
	comm, _ := os.ReadFile("/proc/1/comm")
	host, _ := os.Hostname()
	if strings.TrimSpace(string(comm)) != "systemd" || host != "testbed" || os.Geteuid() != 0 {
		testenv.Missing(t, "the systemd testbed (PID 1 systemd, hostname testbed, root): run scripts/testbed-tests.sh")
	}
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	c, err := logind.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Cleanup(func() { noneClosing(t, c) })
	return c, filepath.Join(runDir, "xpra-proxy-session")
}

func setup() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	steps := [][]string{
		{"groupadd", "-f", extraGroup},
		{"useradd", "-m", "-s", "/bin/sh", "-G", extraGroup, testUser},
		{"useradd", "-m", "-s", "/bin/sh", "-e", "1970-01-02", expired},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v\n%s", s, err, out)
		}
	}
	pam, ok := packaged("xpra-proxy.pam")
	if !ok {
		pam = fallbackPAM
	}
	fmt.Printf("PAM service xpra-proxy: packaging's file: %v\n", ok)
	files := map[string]string{
		"/etc/pam.d/xpra-proxy":                pam,
		"/etc/systemd/logind.conf.d/kill.conf": "[Login]\nKillUserProcesses=yes\n",
	}
	for path, body := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(self, filepath.Join(runDir, "xpra-proxy-session")); err != nil {
		return err
	}
	return restartLogind()
}

func restartLogind() error {
	if out, err := exec.Command("systemctl", "restart", "systemd-logind").CombinedOutput(); err != nil {
		return fmt.Errorf("restarting logind: %v\n%s", err, out)
	}
	return nil
}

// killUserProcesses switches logind's setting for one test.
func killUserProcesses(t *testing.T, on bool) {
	t.Helper()
	v := map[bool]string{true: "yes", false: "no"}[on]
	if err := os.WriteFile("/etc/systemd/logind.conf.d/kill.conf", []byte("[Login]\nKillUserProcesses="+v+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := restartLogind(); err != nil {
		t.Fatal(err)
	}
	if got := run(t, "busctl", "get-property", "org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager", "KillUserProcesses"); strings.TrimSpace(got) != "b "+map[bool]string{true: "true", false: "false"}[on] {
		t.Fatalf("logind's KillUserProcesses is %q", got)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func uidOf(t *testing.T, name string) uint32 {
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n)
}

func spec(leaderPath string, cmd ...string) logind.Spec {
	return logind.Spec{User: testUser, Command: cmd, Leader: leaderPath, RemoteHost: "192.0.2.44"}
}

// loginctlShow is `loginctl show-session ID` as a map.
func loginctlShow(t *testing.T, id string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(run(t, "loginctl", "show-session", id), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// noneClosing: after each test no session at all may be left "closing".
func noneClosing(t *testing.T, c *logind.Conn) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	ss, err := c.ListSessions(ctx, logind.AnyUser)
	if err != nil {
		t.Error(err)
	}
	for _, s := range ss {
		if s.State == "closing" {
			t.Errorf("session %s of %s (%s) left closing", s.ID, s.User, s.Service)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is as good as gone.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// children lists the pids whose parent is pid.
func children(pid uint32) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st := procStatus(n)
		if st["PPid"] == strconv.Itoa(int(pid)) {
			out = append(out, n)
		}
	}
	return out
}

// tasks lists the threads of pid.
func tasks(pid int) []int {
	var out []int
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func procStatus(pid int) map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// payloadOf is the leader's child once it has exec'd the payload. Before
// that the leader may have another child for a moment: Go's os/exec probes
// clone(CLONE_PIDFD) with a throwaway child of the leader's own image, which
// counted as the payload in CI and was gone a moment later.
func payloadOf(t *testing.T, u logind.Unit) int {
	t.Helper()
	leaderExe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", u.Session.Leader))
	if err != nil {
		t.Fatalf("the leader %d: %v", u.Session.Leader, err)
	}
	var payload []int
	waitFor(t, 5*time.Second, "the payload process", func() bool {
		payload = payload[:0]
		for _, k := range children(u.Session.Leader) {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", k)); err == nil && exe != leaderExe {
				payload = append(payload, k)
			}
		}
		return len(payload) == 1
	})
	return payload[0]
}

// childRunning finds the child of pid whose command line has arg.
func childRunning(t *testing.T, pid uint32, arg string) int {
	t.Helper()
	found := 0
	waitFor(t, 5*time.Second, fmt.Sprintf("a child of %d with %q", pid, arg), func() bool {
		for _, k := range children(pid) {
			cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
			if slices.Contains(strings.Split(string(cl), "\x00"), arg) {
				found = k
				return true
			}
		}
		return false
	})
	return found
}

// expectEvent waits for kind/id on ch.
func expectEvent(t *testing.T, ch <-chan logind.Event, kind logind.EventKind, id string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch ended before %s %s", kind, id)
			}
			if ev.Kind == kind && ev.ID == id {
				return
			}
		case <-timeout:
			t.Fatalf("no %s for session %s", kind, id)
		}
	}
}

func TestSessionAsLogindShowsIt(t *testing.T) {
	c, leaderPath := testbed(t)
	ctx := ctxT(t, 60*time.Second)
	events, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var props []logind.Property
	for _, a := range []string{"NoNewPrivileges=yes", "PrivateTmp=yes", "TasksMax=321", "LimitNOFILE=1000:2000"} {
		p, err := logind.ParseProperty(a)
		if err != nil {
			t.Fatal(err)
		}
		props = append(props, p)
	}
	// An admin's drop-in for every session unit (prefix drop-in).
	dropin := "/run/systemd/system/" + logind.UnitPrefix + ".service.d"
	if err := os.MkdirAll(dropin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropin+"/50-test.conf", []byte("[Service]\nEnvironment=FROM_DROPIN=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dropin)
		exec.Command("systemctl", "daemon-reload").Run()
	})
	run(t, "systemctl", "daemon-reload")
	sp := spec(leaderPath, "/bin/sh", "-c", `echo "$XDG_SESSION_ID" > "$HOME/started"; exec sleep infinity`)
	sp.Display = ":77"
	sp.Env = []string{"XPRA_TEST_VAR=hello world"}
	sp.Properties = props
	start := time.Now()
	u, err := c.StartSession(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("StartSession: %s, session %s in %v", u.Name, u.Session.ID, time.Since(start))
	uid := uidOf(t, testUser)

	// What logind says, through our API and through loginctl.
	s := u.Session
	want := logind.Session{ID: s.ID, UID: uid, User: testUser, Class: "user", Type: "x11", Remote: true,
		RemoteHost: "192.0.2.44", Service: "xpra-proxy", State: s.State, Scope: "session-" + s.ID + ".scope",
		Leader: s.Leader, Display: ":77", Since: s.Since}
	if s != want {
		t.Errorf("session\n got %+v\nwant %+v", s, want)
	}
	if s.State != "active" && s.State != "online" || !s.IsProxy() {
		t.Errorf("state %q, IsProxy %v", s.State, s.IsProxy())
	}
	show := loginctlShow(t, s.ID)
	for k, v := range map[string]string{"Name": testUser, "User": strconv.Itoa(int(uid)), "Class": "user", "Type": "x11",
		"Remote": "yes", "RemoteHost": "192.0.2.44", "Service": "xpra-proxy", "Display": ":77", "Scope": want.Scope} {
		if show[k] != v {
			t.Errorf("loginctl show-session %s: %s=%q, want %q", s.ID, k, show[k], v)
		}
	}
	if list := run(t, "loginctl", "list-sessions", "--no-legend"); !strings.Contains(list, s.ID) || !strings.Contains(list, testUser) {
		t.Errorf("loginctl list-sessions does not show %s:\n%s", s.ID, list)
	}
	for _, who := range []uint32{uid, logind.AnyUser} {
		ss, err := c.ListSessions(ctx, who)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(ss, func(x logind.Session) bool { return x.ID == s.ID && x.RemoteHost == "192.0.2.44" }) {
			t.Errorf("ListSessions(%d) misses %s: %+v", who, s.ID, ss)
		}
	}
	if ss, _ := c.ListSessions(ctx, uid+1); len(ss) != 0 {
		t.Errorf("ListSessions(other uid) = %+v", ss)
	}
	expectEvent(t, events, logind.SessionNew, s.ID)

	// The processes: the payload is the user with its groups, in the session's
	// scope, in its home, with the sandbox; the leader has given up root.
	payload := payloadOf(t, u)
	st := procStatus(payload)
	u2, _ := user.Lookup(testUser)
	g, _ := user.LookupGroup(extraGroup)
	ids := func(v string) string { return strings.Join(strings.Fields(v), " ") }
	if ids(st["Uid"]) != strings.Repeat(u2.Uid+" ", 3)+u2.Uid || ids(st["Gid"]) != strings.Repeat(u2.Gid+" ", 3)+u2.Gid {
		t.Errorf("payload uid %q gid %q, want %s/%s", st["Uid"], st["Gid"], u2.Uid, u2.Gid)
	}
	if !slices.Contains(strings.Fields(st["Groups"]), g.Gid) {
		t.Errorf("payload groups %q lack %s (%s)", st["Groups"], extraGroup, g.Gid)
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("payload NoNewPrivs %q: the service's sandbox did not reach it", st["NoNewPrivs"])
	}
	if st["CapEff"] != "0000000000000000" || st["CapPrm"] != "0000000000000000" {
		t.Errorf("payload has capabilities: %q %q", st["CapEff"], st["CapPrm"])
	}
	// The leader gives up root right after starting the payload.
	waitFor(t, 5*time.Second, "the leader to give up root", func() bool {
		lst := procStatus(int(s.Leader))
		return ids(lst["Uid"]) == strings.Repeat(u2.Uid+" ", 3)+u2.Uid && ids(lst["Gid"]) == strings.Repeat(u2.Gid+" ", 3)+u2.Gid &&
			lst["CapEff"] == "0000000000000000" && lst["CapPrm"] == "0000000000000000"
	})
	for _, task := range tasks(int(s.Leader)) { // every thread, not just the main one
		if lst := procStatus(task); ids(lst["Uid"]) != strings.Repeat(u2.Uid+" ", 3)+u2.Uid {
			t.Errorf("leader thread %d still has uids %q", task, lst["Uid"])
		}
	}
	if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", payload)); !strings.Contains(string(cg), "/user.slice/user-"+u2.Uid+".slice/"+want.Scope) {
		t.Errorf("payload not in the session scope:\n%s", cg)
	}
	if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", payload)); cwd != u2.HomeDir {
		t.Errorf("payload cwd %q, want %q", cwd, u2.HomeDir)
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", payload))
	for _, kv := range []string{"XDG_SESSION_ID=" + s.ID, "XDG_RUNTIME_DIR=/run/user/" + u2.Uid, "HOME=" + u2.HomeDir,
		"USER=" + testUser, "XDG_SESSION_TYPE=x11", "XPRA_TEST_VAR=hello world", "FROM_DROPIN=1"} {
		if !slices.Contains(strings.Split(string(env), "\x00"), kv) {
			t.Errorf("payload environment lacks %q", kv)
		}
	}
	if lim, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", payload)); !strings.Contains(strings.Join(strings.Fields(string(lim)), " "), "Max open files 1000 2000 files") {
		t.Errorf("LimitNOFILE not applied:\n%s", lim)
	}
	waitFor(t, 5*time.Second, "the payload's file", func() bool {
		b, _ := os.ReadFile(filepath.Join(u2.HomeDir, "started"))
		return strings.TrimSpace(string(b)) == s.ID
	})
	if got := strings.TrimSpace(run(t, "systemctl", "show", "-p", "TasksMax", "--value", want.Scope)); got != "321" {
		t.Errorf("scope TasksMax = %q, want 321", got)
	}

	// Terminate: gone, with its unit and processes; SessionRemoved seen.
	start = time.Now()
	if err := c.Terminate(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	t.Logf("Terminate: %v", time.Since(start))
	expectEvent(t, events, logind.SessionRemoved, s.ID)
	if _, err := c.Session(ctx, s.ID); !errors.Is(err, logind.ErrNoSession) {
		t.Errorf("after Terminate: %v", err)
	}
	waitFor(t, 10*time.Second, "the payload and leader to exit", func() bool { return !alive(payload) && !alive(int(s.Leader)) })
	waitFor(t, 10*time.Second, "the unit to go", func() bool {
		out, _ := exec.Command("systemctl", "show", "-p", "LoadState", "--value", u.Name).Output()
		return strings.TrimSpace(string(out)) == "not-found"
	})
}

// A login of the same user elsewhere, and its logout with
// KillUserProcesses=yes, leave the proxy's session alone.
func TestSurvivesTheUsersLogout(t *testing.T) {
	c, leaderPath := testbed(t)
	ctx := ctxT(t, 60*time.Second)
	u, err := c.StartSession(ctx, spec(leaderPath, "/bin/sleep", "infinity"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Terminate(ctxT(t, 20*time.Second), u.Session.ID)
	payload := payloadOf(t, u)

	// The user logs in (the testbed's PAM service: pam_unix + pam_systemd),
	// leaves a process behind, and logs out.
	run(t, "systemd-run", "--unit=xpst-login", "-p", "PAMName=testbed-login", "-p", "User="+testUser,
		"-p", "Environment=XDG_SESSION_CLASS=user XDG_SESSION_TYPE=tty",
		"/bin/sh", "-c", "sleep 600 & exec sleep 600")
	var login logind.Session
	waitFor(t, 10*time.Second, "the login session", func() bool {
		pid, _ := strconv.Atoi(strings.TrimSpace(run(t, "systemctl", "show", "-p", "MainPID", "--value", "xpst-login")))
		s, err := c.SessionByPID(ctx, uint32(pid))
		login = s
		return err == nil && s.Service == "testbed-login"
	})
	// The shell exec'd into the leader's sleep; its other child is the leftover
	// (the first is systemd's "(sd-pam)").
	leftover := childRunning(t, login.Leader, "600")
	run(t, "systemctl", "stop", "xpst-login")
	if login.IsProxy() {
		t.Errorf("a testbed-login session counts as the proxy's: %+v", login)
	}
	if err := c.WaitGone(ctxT(t, 15*time.Second), login.ID); err != nil {
		t.Fatalf("the login session did not end: %v", err)
	}
	waitFor(t, 10*time.Second, "KillUserProcesses=yes to kill the login's leftover", func() bool { return !alive(leftover) })

	s, err := c.Session(ctx, u.Session.ID)
	if err != nil {
		t.Fatalf("the proxy's session went with the user's logout: %v", err)
	}
	if s.State != "active" && s.State != "online" || !alive(payload) {
		t.Fatalf("the proxy's session after the logout: state %s, payload alive %v", s.State, alive(payload))
	}
}

// With KillUserProcesses=no, a stopped unit or a payload that exits by
// itself still takes what it left running with it: no session stays closing.
func TestLeftoversEndWithTheSession(t *testing.T) {
	c, leaderPath := testbed(t)
	killUserProcesses(t, false)
	defer killUserProcesses(t, true)
	ctx := ctxT(t, 60*time.Second)
	for _, tc := range []struct {
		name string
		cmd  string
		stop bool
	}{
		{"unit stopped", "sleep 600 & exec sleep 600", true},
		// The payload lives long enough for the test to see its leftover
		// child even on a loaded machine, then exits by itself.
		{"payload exits", "sleep 600 & sleep 6; exit 3", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := c.StartSession(ctx, spec(leaderPath, "/bin/sh", "-c", tc.cmd))
			if err != nil {
				t.Fatal(err)
			}
			payload := payloadOf(t, u)
			leftover := childRunning(t, uint32(payload), "600")
			if tc.stop {
				run(t, "systemctl", "stop", u.Name)
			}
			if err := c.WaitGone(ctxT(t, 15*time.Second), u.Session.ID); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the leftover to end", func() bool { return !alive(leftover) })
		})
	}
}

// PAM's account check refuses an expired account: StartSession says so and
// leaves nothing behind.
func TestRefusedAccount(t *testing.T) {
	c, leaderPath := testbed(t)
	ctx := ctxT(t, 30*time.Second)
	sp := spec(leaderPath, "/bin/sleep", "infinity")
	sp.User = expired
	sp.Unit = "xpra-proxy-session-refused.service"
	_, err := c.StartSession(ctx, sp)
	if err == nil || !strings.Contains(err.Error(), "ended before logind registered its session") {
		t.Fatalf("StartSession for an expired account: %v", err)
	}
	t.Logf("refused: %v", err)
	if ss, _ := c.ListSessions(ctx, uidOf(t, expired)); len(ss) != 0 {
		t.Errorf("sessions left: %+v", ss)
	}
	waitFor(t, 5*time.Second, "the failed unit to be collected", func() bool {
		out, _ := exec.Command("systemctl", "show", "-p", "LoadState", "--value", sp.Unit).Output()
		return strings.TrimSpace(string(out)) == "not-found"
	})
	// journald may read the leader's last words after the unit has ended.
	waitFor(t, 5*time.Second, "the leader's reason and the failure in the journal", func() bool {
		log := run(t, "journalctl", "-q", "-u", sp.Unit, "--no-pager")
		return strings.Contains(log, "account refused by PAM") && strings.Contains(log, "status=1/FAILURE")
	})
}

// The supervisor's restart (its own hardened unit) leaves a session it
// started running; the session is outside its sandbox.
func TestSurvivesSupervisorRestart(t *testing.T) {
	c, leaderPath := testbed(t)
	self, _ := os.Executable()
	state := filepath.Join(runDir, "supervisor.json")
	os.Remove(state)
	unit := fmt.Sprintf(`[Service]
Environment=%s=supervisor XPRA_PROXY_TEST_STATE=%s XPRA_PROXY_TEST_LEADER=%s
ExecStart=%s
ReadWritePaths=%s
`, roleEnv, state, leaderPath, self, runDir) + supervisorSandbox(t) +
		// Sessions are not the supervisor's children: they survive even
		// where its restart kills everything in its cgroup.
		"KillMode=control-group\n"
	if err := os.WriteFile("/run/systemd/system/xpra-proxy.service", []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("systemctl", "stop", "xpra-proxy.service").Run()
		os.Remove("/run/systemd/system/xpra-proxy.service")
		exec.Command("systemctl", "daemon-reload").Run()
	})
	run(t, "systemctl", "daemon-reload")
	run(t, "systemctl", "start", "xpra-proxy.service")
	var st supervisorState
	read := func() bool {
		b, err := os.ReadFile(state)
		return err == nil && json.Unmarshal(b, &st) == nil
	}
	waitFor(t, 20*time.Second, "the supervisor to start a session", func() bool { return read() && st.Session != "" && len(st.Runs) == 1 })
	ctx := ctxT(t, 60*time.Second)
	defer c.Terminate(ctxT(t, 20*time.Second), st.Session)
	s, err := c.Session(ctx, st.Session)
	if err != nil {
		t.Fatal(err)
	}
	home := "/home/" + testUser
	waitFor(t, 5*time.Second, "the session to write in the home the supervisor cannot see", func() bool {
		b, _ := os.ReadFile(home + "/from-session")
		return strings.TrimSpace(string(b)) == st.Session
	})

	run(t, "systemctl", "restart", "xpra-proxy.service")
	waitFor(t, 20*time.Second, "the restarted supervisor", func() bool { return read() && len(st.Runs) == 2 })
	if st.Runs[0] == st.Runs[1] {
		t.Fatalf("supervisor pid unchanged: %v", st.Runs)
	}
	if !st.FoundAfterRestart {
		t.Errorf("the restarted supervisor did not find its session through ListSessions")
	}
	s2, err := c.Session(ctx, st.Session)
	if err != nil {
		t.Fatalf("the session went with the supervisor's restart: %v", err)
	}
	if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", s.Leader)); strings.Contains(string(cg), "xpra-proxy.service") || !strings.Contains(string(cg), s.Scope) {
		t.Errorf("the session's leader is not in its own scope:\n%s", cg)
	}
	if s2.Leader != s.Leader || !alive(int(s.Leader)) || s2.State == "closing" {
		t.Fatalf("session after the restart: %+v (before: leader %d)", s2, s.Leader)
	}
}

// supervisorSandbox is the sandbox of packaging's xpra-proxy.service (what
// its [Service] section says, less how it starts), else a like one.
func supervisorSandbox(t *testing.T) string {
	unit, ok := packaged("xpra-proxy.service")
	t.Logf("supervisor sandbox from packaging's unit: %v", ok)
	if !ok {
		return `ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
NoNewPrivileges=yes
CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_KILL CAP_DAC_READ_SEARCH CAP_AUDIT_WRITE CAP_SYS_NICE
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallFilter=@system-service
ProtectProc=invisible
ProcSubset=pid
PrivateDevices=yes
`
	}
	var out []string
	section := ""
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		key, _, _ := strings.Cut(line, "=")
		switch {
		case section != "[Service]" || line == "" || strings.HasPrefix(line, "#"):
		case slices.Contains([]string{"Type", "NotifyAccess", "ExecStart", "Restart", "ExecReload"}, key):
		default:
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

type supervisorState struct {
	Session           string
	Unit              string
	Runs              []int
	FoundAfterRestart bool
}

// fakeSupervisor stands in for xpra-proxy in its unit: the first run starts
// a session, later runs look for it; each records itself, then waits for
// SIGTERM.
func fakeSupervisor() int {
	path := os.Getenv("XPRA_PROXY_TEST_STATE")
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "fake supervisor:", err); return 1 }
	var st supervisorState
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return fail(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := logind.Dial(ctx)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if st.Session == "" {
		u, err := c.StartSession(ctx, logind.Spec{User: testUser, RemoteHost: "198.51.100.9",
			Leader:  os.Getenv("XPRA_PROXY_TEST_LEADER"),
			Command: []string{"/bin/sh", "-c", `echo "$XDG_SESSION_ID" > "$HOME/from-session"; exec sleep infinity`}})
		if err != nil {
			return fail(err)
		}
		st.Session, st.Unit = u.Session.ID, u.Name
	} else {
		u, err := user.Lookup(testUser)
		if err != nil {
			return fail(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		ss, err := c.ListSessions(ctx, uint32(uid))
		if err != nil {
			return fail(err)
		}
		st.FoundAfterRestart = slices.ContainsFunc(ss, func(s logind.Session) bool {
			return s.ID == st.Session && s.Service == logind.ServiceName && s.RemoteHost == "198.51.100.9"
		})
	}
	st.Runs = append(st.Runs, os.Getpid())
	b, _ := json.Marshal(st)
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return fail(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fail(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return 0
}
