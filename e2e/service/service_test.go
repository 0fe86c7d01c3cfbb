// SPDX-License-Identifier: GPL-2.0-or-later

//go:build testbed

// The packaged service, end to end, in the systemd testbed of
// ../shared/lab/systemd: systemd as PID 1, dbus, logind, real PAM, and (the
// testbed's lower layer being the CI host's own root) the same xpra 3.1.3
// and Xvfb the other tests use. scripts/testbed-tests.sh builds the .deb
// with scripts/build-packages.sh and this binary, boots the testbed and runs
// it there; elsewhere the test calls testenv.Missing.
//
// One test, in steps that build on each other, as an admin and a user would:
// install the .deb and enable the socket; log in with the system password
// (unix socket and TLS), and fail with a wrong one; get a session started on
// demand, by connecting without one and by asking (xpra start ssl://...),
// while other clients are served; find it in loginctl; attach the real
// client; read the processes' credentials from /proc; log the user out with
// KillUserProcesses=yes; restart the service, and SIGKILL its supervisor,
// under client loops; reload it under a login loop; read the journal's
// priorities and audit records of a scripted session; start a session
// through HAProxy (PROXY v2) and find the client's address as its logind
// RemoteHost (remotehost_test.go); install the encoder's package and
// re-encode through its service; have sessions
// started by the xpra 6.5.3 build and use one with its client (xpra6_test.go).
package service_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/probe"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
)

const (
	testUser     = "xpsvc"
	testPassword = "Svc-Pass-42" // plain: xpra 3.1.3 does not unquote URL passwords
	extraGroup   = "xpsvcextra"
	unixSocket   = "/run/xpra-proxy/socket"
	tcpAddr      = "127.0.0.1:14500"
	libexec      = "/usr/libexec/xpra-proxy"
	cleanPath    = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	clientRun    = "/run/xpra-test-client" // the clients' XDG_RUNTIME_DIR (they run as root)
)

// The admin's settings: PAM on both sockets, TLS required for it on the TCP
// port (the default; a unix socket is confidential without it), sessions
// started on demand, also for users without one.
var config = `auth = ["pam"]
tcp-auth = ["pam"]
ssl-cert = "/etc/xpra-proxy/cert.pem"
ssl-key = "/etc/xpra-proxy/key.pem"
per-source-penalty = "0s"
start-session = "auto"
session-displays = "100-119"
session-args = ["--start=xclock -update 1", "--mdns=no", "--pulseaudio=no", "--notifications=no", "--dbus-launch=",
  "--dbus-proxy=no", "--dbus-control=no", "--printing=no", "--webcam=no", "--opengl=no", "--speaker=off",
  "--microphone=off", "--file-transfer=no", "--html=off"]
`

func TestService(t *testing.T) {
	comm, _ := os.ReadFile("/proc/1/comm")
	host, _ := os.Hostname()
	if strings.TrimSpace(string(comm)) != "systemd" || host != "testbed" || os.Geteuid() != 0 {
		testenv.Missing(t, "the systemd testbed (PID 1 systemd, hostname testbed, root): run scripts/testbed-tests.sh")
	}
	deb := packageFile(t)
	for _, tool := range []string{"xpra", "Xvfb", "xvfb-run", "dpkg"} {
		testenv.Command(t, tool)
	}
	lc, err := logind.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() }) // after tb.cleanup, which uses it
	tb := &bed{lc: lc}
	t.Cleanup(func() { tb.cleanup(t) })

	steps := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"install", func(t *testing.T) { tb.install(t, deb) }},
		{"system password", tb.passwordLogin},
		{"HTML5 client and websocket", tb.html5},
		{"session started for a user without one", tb.autoStart},
		{"session started on request", tb.requestStart},
		{"sessions run hardened", tb.sessionSandbox},
		{"sessions and terminate", tb.sessionsCommand},
		{"real xpra attach", tb.attach},
		{"the hardened session draws", tb.sessionDraws},
		{"processes", tb.processes},
		{"survives the user's logout", tb.logout},
		{"survives a restart of the service", tb.restart},
		{"survives a SIGKILL of the supervisor", tb.killed},
		{"a bad config keeps the port", tb.badConfig},
		{"reload under a login loop; a broken reload keeps the old settings", tb.reload},
		{"journal priorities and audit records", tb.journalAudit},
		// Before the encoder's step: its client's Xvfb (root's, on the
		// first free display, :100 by then) leaves a lock file the
		// session user cannot remove, so a session on :100 would fail.
		{"behind HAProxy: logind RemoteHost is the client's", tb.remoteHost},
		{"shared encoder service", tb.encoder},
		{"xpra 6.5.3 session on demand, 6.5.3 client with PAM", tb.xpra6Session},
		{"session hosts behind two fronts sharing PostgreSQL", tb.sessionHosts},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.fn) {
			t.Fatalf("step %q failed; the later ones build on it", s.name)
		}
	}
}

// packageFile is the .deb scripts/testbed-tests.sh put beside this binary.
func packageFile(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	debs, _ := filepath.Glob(filepath.Join(filepath.Dir(self), "deb", "xpra-proxy_*.deb"))
	if len(debs) != 1 {
		testenv.Missing(t, "the .deb beside the test binary (deb/xpra-proxy_*.deb): run scripts/testbed-tests.sh")
	}
	return debs[0]
}

// bed is the state the steps share.
type bed struct {
	lc        *logind.Conn
	uid, gid  int
	groups    []string
	auto      logind.Session // started because the user had none
	requested logind.Session // started by xpra start ssl://...
	attached  *client
	relay     int // the attached client's relay worker
}

func (b *bed) install(t *testing.T, deb string) {
	t0 := time.Now()
	// --force-confnew: the lower layer is a live root, which may hold a
	// stray /etc/pam.d/xpra-proxy of its own.
	sh(t, "dpkg", "-i", "--force-confnew", deb)
	t.Logf("dpkg -i took %v", time.Since(t0).Round(time.Millisecond))
	for _, f := range []string{"/usr/bin/xpra-proxy", libexec + "/xpra-proxy-worker", libexec + "/xpra-proxy-preauth", libexec + "/xpra-proxy-pam",
		libexec + "/xpra-proxy-session", libexec + "/xpra-proxy-ldap", libexec + "/xpra-proxy-directory", "/etc/pam.d/xpra-proxy", "/etc/xpra-proxy/xpra-proxy.toml"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if _, err := user.Lookup(proxylab.PreauthUser); err != nil {
		t.Errorf("the package did not create the %s user: %v", proxylab.PreauthUser, err)
	}
	writeCert(t, "/etc/xpra-proxy/cert.pem", "/etc/xpra-proxy/key.pem")
	if err := os.WriteFile("/etc/xpra-proxy/xpra-proxy.toml", []byte(config), 0o640); err != nil {
		t.Fatal(err)
	}
	sh(t, "groupadd", "-f", extraGroup)
	sh(t, "useradd", "-m", "-s", "/bin/bash", "-G", extraGroup, testUser)
	chpasswd(t, testUser, testPassword)
	u, err := user.Lookup(testUser)
	if err != nil {
		t.Fatal(err)
	}
	b.uid, _ = strconv.Atoi(u.Uid)
	b.gid, _ = strconv.Atoi(u.Gid)
	b.groups, _ = u.GroupIds()
	// Sessions must outlive the user's own logins: the strict setting.
	if err := os.MkdirAll("/etc/systemd/logind.conf.d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/systemd/logind.conf.d/kill.conf", []byte("[Login]\nKillUserProcesses=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "systemctl", "restart", "systemd-logind")
	if err := os.MkdirAll(clientRun, 0o700); err != nil {
		t.Fatal(err)
	}

	sh(t, "systemctl", "enable", "--now", "xpra-proxy.socket")
	for _, unit := range []string{"xpra-proxy.socket", "xpra-proxy-unix.socket"} {
		if got := strings.TrimSpace(try("systemctl", "is-active", unit)); got != "active" {
			t.Errorf("%s is %q", unit, got)
		}
	}
	if got := strings.TrimSpace(try("systemctl", "is-enabled", "xpra-proxy.socket")); got != "enabled" {
		t.Errorf("xpra-proxy.socket is %q", got)
	}
	// Socket activation: nothing runs until the first client.
	if got := strings.TrimSpace(try("systemctl", "is-active", "xpra-proxy.service")); got == "active" {
		t.Errorf("the service runs before any connection")
	}
}

func (b *bed) passwordLogin(t *testing.T) {
	if out := xpra(t, 60*time.Second, "version", "socket://"+unixSocket); !strings.Contains(out, "3.1") {
		t.Fatalf("xpra version through the unix socket:\n%s", out)
	}
	if got := strings.TrimSpace(try("systemctl", "is-active", "xpra-proxy.service")); got != "active" {
		t.Fatalf("the first connection did not start the service: %q\n%s", got, journal("xpra-proxy.service"))
	}
	if out := xpra(t, 60*time.Second, "version", "tcp://"+tcpAddr+"/"); !strings.Contains(out, "3.1") {
		t.Fatalf("xpra version through the TCP port:\n%s", out)
	}
	// xpra 3.1.3 reads socket://USER:PASSWORD/PATH; its @ form keeps the @.
	unixURL := func(pw string) string { return "socket://" + testUser + ":" + pw + unixSocket }
	if out := xpra(t, 60*time.Second, "info", unixURL(testPassword)); !strings.Contains(out, "server.type=xpra-proxy") {
		t.Fatalf("xpra info with the system password on the unix socket:\n%s", out)
	}
	tlsURL := "ssl://" + testUser + ":" + testPassword + "@" + tcpAddr + "/"
	if out := xpra(t, 60*time.Second, "info", tlsURL, "--ssl-server-verify-mode=none"); !strings.Contains(out, "server.type=xpra-proxy") {
		t.Fatalf("xpra info with the system password over TLS:\n%s", out)
	}
	if out := xpra(t, 60*time.Second, "info", unixURL("not-"+testPassword)); !strings.Contains(out, "authentication failed") || strings.Contains(out, "server.type") {
		t.Fatalf("xpra info with a wrong password:\n%s", out)
	}
	// PAM needs the password itself: not over plain TCP.
	_, err := probe.Run(context.Background(), probe.Options{URL: "tcp://" + testUser + ":" + testPassword + "@" + tcpAddr + "/", Request: "info", Timeout: 30 * time.Second})
	if r := refusal(err); !strings.HasPrefix(r, "authentication failed") || !strings.Contains(r, "encrypted connection") {
		t.Fatalf("PAM over plain TCP: %v", err)
	}
	logs := journal("xpra-proxy.service")
	if !strings.Contains(logs, "authenticated") || !strings.Contains(logs, "module=pam") {
		t.Errorf("the journal does not show PAM logins:\n%s", logs)
	}
	// One PAM helper per attempt, gone once it answered.
	if pids := running(libexec + "/xpra-proxy-pam"); len(pids) > 0 {
		t.Errorf("PAM helpers still running: %v", pids)
	}
}

// autoStart connects as the user, who has no session: the proxy starts one
// (start-session=auto) and connects the client to it. Meanwhile other
// clients, including password logins, are answered.
func (b *bed) autoStart(t *testing.T) {
	if ss := b.proxySessions(t); len(ss) != 0 {
		t.Fatalf("proxy sessions before any start: %+v", ss)
	}
	type result struct {
		res  *probe.Result
		err  error
		done time.Time
	}
	started := make(chan result, 1)
	t0 := time.Now()
	go func() {
		res, err := probe.Run(context.Background(), probe.Options{URL: "socket://" + testUser + ":" + testPassword + "@" + unixSocket,
			Request: probe.Connect, Timeout: 120 * time.Second})
		started <- result{res, err, time.Now()}
	}()
	var answered []time.Time
	var slowest time.Duration
	infoDuring := time.Time{}
	var r result
wait:
	for {
		select {
		case r = <-started:
			break wait
		case <-time.After(100 * time.Millisecond):
		}
		q := time.Now()
		if _, err := probe.Run(context.Background(), probe.Options{URL: "tcp://" + tcpAddr + "/", Request: "version", Timeout: 10 * time.Second}); err != nil {
			t.Errorf("version during the start: %v", err)
			continue
		}
		answered = append(answered, time.Now())
		slowest = max(slowest, time.Since(q))
		if infoDuring.IsZero() {
			if _, err := probe.Run(context.Background(), probe.Options{URL: "socket://" + testUser + ":" + testPassword + "@" + unixSocket,
				Request: "info", Timeout: 30 * time.Second}); err != nil {
				t.Errorf("a password login during the start: %v", err)
			} else {
				infoDuring = time.Now()
			}
		}
	}
	took := r.done.Sub(t0)
	if r.err != nil {
		t.Fatalf("connecting without a session: %v\n%s", r.err, journal("xpra-proxy.service"))
	}
	before := 0
	for _, a := range answered {
		if a.Before(r.done) {
			before++
		}
	}
	t.Logf("session started and connected in %v; %d version requests answered meanwhile (slowest %v); a PAM login answered meanwhile: %v",
		took.Round(time.Millisecond), before, slowest.Round(time.Millisecond), !infoDuring.IsZero() && infoDuring.Before(r.done))
	if before < 3 || infoDuring.IsZero() || !infoDuring.Before(r.done) {
		t.Errorf("other clients waited for the start: %d answers before it was done, PAM login at %v (start done at %v)",
			before, infoDuring.Sub(t0), took)
	}
	if v := r.res.ReplyCaps().Str("version", ""); !strings.HasPrefix(v, "3.1") {
		t.Errorf("the hello that came back is not a 3.1 server's: version %q", v)
	}
	// The journal gets the relay's line a moment later.
	waitFor(t, 10*time.Second, "the relay to :100 (the first of session-displays) in the journal", func() bool { return relayedTo(":100") == 1 })
	ss := b.proxySessions(t)
	if len(ss) != 1 {
		t.Fatalf("proxy sessions: %+v", ss)
	}
	b.auto = ss[0]
	show := loginctlShow(t, b.auto.ID)
	for k, want := range map[string]string{"Name": testUser, "Service": "xpra-proxy", "Class": "user", "Type": "x11",
		"Remote": "no", "Display": ":100"} {
		if show[k] != want {
			t.Errorf("loginctl show-session %s: %s=%q, want %q", b.auto.ID, k, show[k], want)
		}
	}
	if s := show["State"]; s != "active" && s != "online" {
		t.Errorf("session state %q", s)
	}
}

// requestStart asks over TLS, as `xpra start ssl://proxy/ --attach=no`
// (start-new-session with connect=False): a second session, which logind
// shows as remote, from the client's address.
func (b *bed) requestStart(t *testing.T) {
	t0 := time.Now()
	cmd := exec.Command("xpra", "start", "ssl://"+testUser+":"+testPassword+"@"+tcpAddr+"/",
		"--attach=no", "--ssl-server-verify-mode=none", "--start=xterm")
	cmd.Env, cmd.Dir = clientEnv(), "/"
	out, err := cmd.CombinedOutput()
	took := time.Since(t0)
	// xpra 3.1.3 prints "session now available on display :N" only if it
	// finds the display in the answer under a text key, which its own
	// decoders never give it (they return bytes keys, from the reference
	// proxy too): success is its exit status, and the session below.
	if err != nil || !strings.Contains(string(out), "requesting new session") {
		t.Fatalf("xpra start through the proxy: %v\n%s\n%s", err, out, journal("xpra-proxy.service"))
	}
	t.Logf("xpra start ssl://... --attach=no: answered after %v", took.Round(time.Millisecond))
	var s logind.Session
	for _, x := range b.proxySessions(t) {
		if x.Display == ":101" {
			s = x
		}
	}
	if s.ID == "" {
		t.Fatalf("no proxy session on :101: %+v", b.proxySessions(t))
	}
	b.requested = s
	show := loginctlShow(t, s.ID)
	for k, want := range map[string]string{"Name": testUser, "Service": "xpra-proxy", "Class": "user", "Type": "x11",
		"Remote": "yes", "RemoteHost": "127.0.0.1", "Display": ":101"} {
		if show[k] != want {
			t.Errorf("loginctl show-session %s: %s=%q, want %q", s.ID, k, show[k], want)
		}
	}
	// The session lives in its own scope, not in the service's cgroup.
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", s.Leader))
	if strings.Contains(string(cg), "xpra-proxy.service") || !strings.Contains(string(cg), s.Scope) {
		t.Errorf("the session's leader is in:\n%s", cg)
	}
	// The start command the client asked for reached the server's command
	// line, after the admin's.
	var server []string
	for _, k := range children(int(s.Leader)) {
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
		server = strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
	}
	if i, j := slices.Index(server, "--start=xclock -update 1"), slices.Index(server, "--start=xterm"); i < 0 || j < i ||
		!slices.Contains(server, ":101") || !slices.Contains(server, "--daemon=no") {
		t.Errorf("the session's server runs %q", server)
	}
	logs := journal("xpra-proxy.service")
	if !strings.Contains(logs, "session live") {
		t.Errorf("the relay did not log the session coming up:\n%s", logs)
	}
}

// sessionSandbox checks the session started on request: its unit has the
// hardening defaults (logind.DefaultProperties) and its xpra server runs in
// the namespaces they make. It logs systemd-analyze security's figure for
// the unit (SECURITY.md has it).
func (b *bed) sessionSandbox(t *testing.T) {
	unit := ""
	for _, u := range strings.Fields(try("systemctl", "list-units", "--plain", "--no-legend", "--type=service", logind.UnitPrefix+"*")) {
		if strings.HasPrefix(u, logind.UnitPrefix) &&
			strings.TrimSpace(try("systemctl", "show", "-P", "MainPID", u)) == strconv.Itoa(int(b.requested.Leader)) {
			unit = u
		}
	}
	if unit == "" {
		t.Fatalf("no session unit has the leader %d as its main process:\n%s", b.requested.Leader,
			try("systemctl", "list-units", "--no-pager", logind.UnitPrefix+"*"))
	}
	for _, a := range logind.DefaultProperties {
		name, want, _ := strings.Cut(a, "=")
		if got := strings.TrimSpace(try("systemctl", "show", "-P", name, unit)); got != want {
			t.Errorf("%s: %s=%q, want %q", unit, name, got, want)
		}
	}
	out, _ := tryErr("systemd-analyze", "security", "--no-pager", unit)
	t.Logf("systemd-analyze security %s:\n%s", unit, out)
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure in systemd-analyze's output:\n%s", out)
	}
	t.Logf("session unit exposure (systemd-analyze security): %s %s", m[1], m[2])
	if x, err := strconv.ParseFloat(m[1], 64); err != nil || x >= 9.6 {
		t.Errorf("session unit exposure %s: want below the 9.6 of an unhardened unit", m[1])
	}

	// The sandbox is the processes', not only the unit's: the xpra server
	// has a mount and a UTS namespace of its own (ProtectSystem=,
	// ProtectHostname=), and may still gain privileges (sudo in its xterm).
	kids := children(int(b.requested.Leader))
	if len(kids) != 1 {
		t.Fatalf("the session leader has children %v, want xpra alone", kids)
	}
	for _, ns := range []string{"mnt", "uts"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", kids[0], ns))
		if err != nil || theirs == mine {
			t.Errorf("xpra %d: %s namespace %q (%v), the host's %q", kids[0], ns, theirs, err, mine)
		}
	}
	if nnp := proclab.Read(kids[0]).Status["NoNewPrivs"]; nnp != "0" {
		t.Errorf("xpra %d: NoNewPrivs %q: sudo in the session would fail", kids[0], nnp)
	}

}

// sessionDraws: the hardened session started on request draws for the
// client attached to it through the proxy: xclock (session-args) is in the
// server's screenshot, which holds the windows a client shows. The proxy
// relays no screenshot request, so the user's own client asks the session
// directly, through its socket in /run/user/UID/xpra (not private to the
// sandbox either).
func (b *bed) sessionDraws(t *testing.T) {
	dir, err := os.MkdirTemp("", "xpsvc-shot-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chown(dir, b.uid, b.gid); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "session-101.png")
	var colours map[color.Color]int
	var bnd image.Rectangle
	last := ""
	shoot := func() bool {
		cmd := exec.Command("runuser", "-u", testUser, "--", "env", "-i", "PATH="+cleanPath, "HOME=/home/"+testUser,
			"LANG=C.UTF-8", fmt.Sprintf("XDG_RUNTIME_DIR=/run/user/%d", b.uid), "xpra", "screenshot", shot, ":101")
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		fh, ferr := os.Open(shot)
		if ferr != nil {
			last = fmt.Sprintf("xpra screenshot: %v %v\n%s", err, ferr, out)
			return false
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			last = fmt.Sprintf("the screenshot: %v", err)
			return false
		}
		colours, bnd = map[color.Color]int{}, img.Bounds()
		for y := bnd.Min.Y; y < bnd.Max.Y; y += 2 {
			for x := bnd.Min.X; x < bnd.Max.X; x += 2 {
				colours[img.At(x, y)]++
			}
		}
		last = fmt.Sprintf("a %dx%d screenshot of one colour", bnd.Dx(), bnd.Dy())
		return len(colours) >= 2
	}
	// xclock may not have drawn yet: a minute, a try a second.
	for deadline := time.Now().Add(time.Minute); !shoot(); time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("no screenshot of :101 with xclock drawn within a minute: %s", last)
		}
	}
	t.Logf("screenshot of :101 under the hardened unit: %dx%d, %d colours", bnd.Dx(), bnd.Dy(), len(colours))
}

func (b *bed) sessionsCommand(t *testing.T) {
	out := sh(t, "xpra-proxy", "sessions", "--json")
	var list []struct {
		ID, User, Display, RemoteHost, State string
		Remote                               bool
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("xpra-proxy sessions --json: %v\n%s", err, out)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID+"="+s.User+"@"+s.Display)
	}
	sort.Strings(ids)
	want := []string{b.auto.ID + "=" + testUser + "@:100", b.requested.ID + "=" + testUser + "@:101"}
	sort.Strings(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("xpra-proxy sessions: %v, want %v\n%s", ids, want, out)
	}
	if table := sh(t, "xpra-proxy", "sessions"); !strings.Contains(table, "127.0.0.1") || !strings.Contains(table, "2 sessions") {
		t.Errorf("xpra-proxy sessions:\n%s", table)
	}

	// The user's own login is not the proxy's to end.
	login := b.userLogin(t, "xpsvc-login-1")
	out, err := tryErr("xpra-proxy", "terminate", login.ID)
	if err == nil || !strings.Contains(out, "was not started by xpra-proxy") {
		t.Errorf("terminate of a testbed-login session: %v\n%s", err, out)
	}
	if _, err := b.lc.Session(context.Background(), login.ID); err != nil {
		t.Errorf("the refused terminate ended the login session: %v", err)
	}
	sh(t, "systemctl", "stop", "xpsvc-login-1")

	// The session started for the user without one goes, X server and all.
	out = sh(t, "xpra-proxy", "terminate", b.auto.ID)
	if !strings.Contains(out, "terminated") {
		t.Errorf("xpra-proxy terminate: %s", out)
	}
	if _, err := b.lc.Session(context.Background(), b.auto.ID); !errors.Is(err, logind.ErrNoSession) {
		t.Errorf("session %s after terminate: %v", b.auto.ID, err)
	}
	waitFor(t, 10*time.Second, "the X server of :100 to go", func() bool { return !xListening(100) })
	if out, err := tryErr("xpra-proxy", "terminate", "no-such-session"); err == nil || !strings.Contains(out, "no session") {
		t.Errorf("terminate of an unknown id: %v %s", err, out)
	}
}

// attach runs the real xpra client, in an Xvfb of its own, through the TLS
// port to the session started on request.
func (b *bed) attach(t *testing.T) {
	t0 := time.Now()
	b.attached = startClient(t, "ssl://"+testUser+":"+testPassword+"@"+tcpAddr+"/101", "--ssl-server-verify-mode=none")
	t.Logf("xpra attach through TLS: attached after %v", time.Since(t0).Round(time.Millisecond))
	b.relay = findChild(t, supervisorPID(t), "--relay")
	if all := workers(supervisorPID(t), "--relay"); len(all) != 1 {
		t.Fatalf("relay workers %v, want the attached client's alone", all)
	}
}

// html5: the packaged service serves the HTML5 client on its one TCP port
// (HTTP and HTTPS), and a websocket client logs in there with the system
// password over wss, as the browser's client does.
func (b *bed) html5(t *testing.T) {
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, scheme := range []string{"http", "https"} {
		resp, err := hc.Get(scheme + "://" + tcpAddr + "/")
		if err != nil {
			t.Fatalf("GET %s://%s/: %v", scheme, tcpAddr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "xpra websockets client") ||
			resp.Header.Get("Content-Security-Policy") == "" {
			t.Fatalf("GET %s://%s/: %s, %d bytes", scheme, tcpAddr, resp.Status, len(body))
		}
	}
	out := xpra(t, 60*time.Second, "info", "wss://"+testUser+":"+testPassword+"@"+tcpAddr+"/", "--ssl-server-verify-mode=none")
	if !strings.Contains(out, "server.type=xpra-proxy") {
		t.Fatalf("xpra info over wss with the system password:\n%s", out)
	}
}

// processes reads the credentials of every process of ours from /proc, as
// e2e/procs_test.go does for the bare binaries.
func (b *bed) processes(t *testing.T) {
	sup := supervisorPID(t)
	ps := proclab.Read(sup)
	if ps.Status["NoNewPrivs"] != "1" || ps.Status["Uid"] != "0\t0\t0\t0" {
		t.Errorf("supervisor %d: NoNewPrivs %q, Uid %q", sup, ps.Status["NoNewPrivs"], ps.Status["Uid"])
	}
	if capBit(ps.Status["CapBnd"], 21) { // CAP_SYS_ADMIN
		t.Errorf("supervisor %d may still gain CAP_SYS_ADMIN: CapBnd %s", sup, ps.Status["CapBnd"])
	}

	// The relay of the attached client: the user, the user's groups, nothing else.
	relay := proclab.Read(b.relay)
	proclab.CheckConfined(t, relay, b.uid, b.gid, b.groups)
	t.Logf("relay %d: Uid %s, Groups %s, CapEff %s, NoNewPrivs %s, %d fds", relay.PID, relay.Status["Uid"],
		relay.Status["Groups"], relay.Status["CapEff"], relay.Status["NoNewPrivs"], len(relay.FDs))

	// A pre-auth process: a client that has not said hello yet (on the
	// unix socket: on TCP ports it also holds the TLS settings' memfd).
	carriers := workers(sup, "--preauth") // the attached client's TLS carrier is one
	c, err := net.Dial("unix", unixSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pre := findChild(t, sup, "--preauth", carriers...)
	// Under the unit's SystemCallFilter= every child inherits systemd's
	// filter from exec, so findChild may return a spare still starting
	// (reading files it may read only before its sandbox); its own filter,
	// stacked on those, is the last step of that.
	waitFor(t, 15*time.Second, fmt.Sprintf("pre-auth %d to apply its sandbox", pre), func() bool {
		return proclab.Sandboxed(proclab.Read(pre), proclab.Read(sup))
	})
	pu, _ := user.Lookup(proxylab.PreauthUser)
	puid, _ := strconv.Atoi(pu.Uid)
	pgid, _ := strconv.Atoi(pu.Gid)
	preauth := proclab.Read(pre)
	proclab.CheckConfined(t, preauth, puid, pgid, nil)
	t.Logf("pre-auth %d: Uid %s, Groups %q, CapEff %s, fds %v", pre, preauth.Status["Uid"], preauth.Status["Groups"],
		preauth.Status["CapEff"], preauth.FDs)
	c.Close()

	// The session: its leader and xpra run as the user, without privileges;
	// the leader has given up root once xpra runs.
	lead := proclab.Read(int(b.requested.Leader))
	proclab.CheckIDs(t, lead, b.uid, b.gid)
	if strings.Trim(lead.Status["CapEff"], "0") != "" || strings.Trim(lead.Status["CapPrm"], "0") != "" {
		t.Errorf("session leader %d keeps capabilities: %s / %s", lead.PID, lead.Status["CapEff"], lead.Status["CapPrm"])
	}
	t.Logf("session leader %d: Uid %s, CapPrm %s", lead.PID, lead.Status["Uid"], lead.Status["CapPrm"])
	kids := children(int(b.requested.Leader))
	if len(kids) != 1 {
		t.Errorf("the session leader has children %v, want xpra alone", kids)
	}
	for _, k := range kids {
		proclab.CheckIDs(t, proclab.Read(k), b.uid, b.gid)
	}
	if pids := running(libexec + "/xpra-proxy-pam"); len(pids) > 0 {
		t.Errorf("PAM helpers still running: %v", pids)
	}
}

// logout: the user logs in and out on their own (testbed-login: pam_unix,
// pam_systemd) with KillUserProcesses=yes; the proxy's session and the
// attached client are untouched.
func (b *bed) logout(t *testing.T) {
	login := b.userLogin(t, "xpsvc-login-2")
	sh(t, "systemctl", "stop", "xpsvc-login-2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.lc.WaitGone(ctx, login.ID); err != nil {
		t.Fatalf("the login session did not end: %v", err)
	}
	s, err := b.lc.Session(context.Background(), b.requested.ID)
	if err != nil {
		t.Fatalf("the proxy's session went with the user's logout: %v", err)
	}
	if s.State == "closing" || !alive(int(s.Leader)) || !xListening(101) {
		t.Fatalf("the proxy's session after the logout: %+v, X server listening: %v", s, xListening(101))
	}
	if b.attached.disconnected() {
		t.Fatalf("the attached client was disconnected:\n%s", b.attached.out)
	}
}

// restart restarts the service while clients connect in a loop on both
// sockets: systemd holds the sockets, so none is refused; the relay of the
// attached client and the session stay.
func (b *bed) restart(t *testing.T) {
	before := supervisorPID(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	type tally struct {
		ok   atomic.Int64
		errs sync.Map // error text → count, for the report
		bad  atomic.Int64
	}
	var tallies [2]tally
	for i, url := range []string{"tcp://" + tcpAddr + "/", "socket://" + unixSocket} {
		wg.Go(func() {
			for !stop.Load() {
				_, err := probe.Run(context.Background(), probe.Options{URL: url, Request: "version", Timeout: 20 * time.Second})
				if err != nil {
					tallies[i].bad.Add(1)
					n, _ := tallies[i].errs.LoadOrStore(err.Error(), new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
					continue
				}
				tallies[i].ok.Add(1)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	sh(t, "systemctl", "restart", "xpra-proxy.service")
	took := time.Since(t0)
	after := supervisorPID(t)
	time.Sleep(time.Second) // the loop keeps going against the new supervisor
	stop.Store(true)
	wg.Wait()
	for i, name := range []string{"tcp", "unix"} {
		t.Logf("%s client loop across the restart (%v): %d answered, %d failed", name, took.Round(time.Millisecond), tallies[i].ok.Load(), tallies[i].bad.Load())
		tallies[i].errs.Range(func(k, v any) bool {
			t.Errorf("%s client loop: %d× %s", name, v.(*atomic.Int64).Load(), k)
			return true
		})
		if tallies[i].ok.Load() == 0 {
			t.Errorf("%s client loop: no answers", name)
		}
	}
	if after == before || after == 0 {
		t.Fatalf("supervisor pid %d before, %d after the restart", before, after)
	}
	if !alive(b.relay) || b.attached.disconnected() {
		t.Errorf("the relay worker %d of the attached client (alive: %v) or the client went with the restart:\n%s",
			b.relay, alive(b.relay), b.attached.out)
	}
	s, err := b.lc.Session(context.Background(), b.requested.ID)
	if err != nil || s.Leader != b.requested.Leader || s.State == "closing" {
		t.Fatalf("the session after the restart: %+v %v", s, err)
	}
	// The new supervisor serves it: one session, so no display is needed.
	n := relayedTo(":101")
	if _, err := probe.Run(context.Background(), probe.Options{URL: "socket://" + testUser + ":" + testPassword + "@" + unixSocket,
		Request: probe.Connect, Timeout: 60 * time.Second}); err != nil {
		t.Fatalf("connecting after the restart: %v", err)
	}
	waitFor(t, 10*time.Second, "the connection after the restart to be relayed to :101", func() bool { return relayedTo(":101") == n+1 })
	// Its relay could make its control socket (xpra-proxy list) in the
	// user's runtime directory, mounted before this supervisor started.
	if logs := journal("xpra-proxy.service"); strings.Contains(logs, `msg="no control socket"`) {
		t.Errorf("a relay had no control socket:\n%s", logs)
	}
}

// killed SIGKILLs the supervisor while clients connect in loops: a Go
// client asking for the version on the TCP port and on the unix socket, and
// the real xpra client (xpra version) on the TCP port. systemd holds both
// listening sockets and restarts the service (Restart=on-failure), so no
// connection is refused; the kernel queues them until the new supervisor
// accepts. Only a login the dead supervisor had already accepted (its
// pre-auth process dies with it) may be lost, one per loop at most. The
// attached client's relay and the session stay. Each loop's worst wait is
// logged for BENCHMARKS.md.
func (b *bed) killed(t *testing.T) {
	before := supervisorPID(t)
	type attempt struct {
		start, end time.Time
		err        error
	}
	type loop struct {
		name string
		run  func() error
		mu   sync.Mutex
		done []attempt
	}
	loops := []*loop{
		{name: "tcp (Go client)", run: func() error {
			_, err := probe.Run(context.Background(), probe.Options{URL: "tcp://" + tcpAddr + "/", Request: "version", Timeout: 30 * time.Second})
			return err
		}},
		{name: "unix (Go client)", run: func() error {
			_, err := probe.Run(context.Background(), probe.Options{URL: "socket://" + unixSocket, Request: "version", Timeout: 30 * time.Second})
			return err
		}},
		{name: "tcp (xpra version)", run: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "xpra", "version", "tcp://"+tcpAddr+"/")
			cmd.Env, cmd.Dir = clientEnv(), "/"
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "3.1") {
				return fmt.Errorf("xpra version: %v: %s", err, bytes.TrimSpace(out))
			}
			return nil
		}},
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Go(func() {
			for !stop.Load() {
				a := attempt{start: time.Now()}
				a.err = l.run()
				a.end = time.Now()
				l.mu.Lock()
				l.done = append(l.done, a)
				l.mu.Unlock()
				// All loops come from 127.0.0.1: together they stay under
				// the default per-source-rate (10 a second), which on a
				// quiet machine unpaced loops exceed, and are refused for.
				time.Sleep(350 * time.Millisecond)
			}
		})
	}
	time.Sleep(3 * time.Second) // every loop has answers from the old supervisor
	killAt := time.Now()
	if err := syscall.Kill(before, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var after int
	waitFor(t, 30*time.Second, "systemd to start a new supervisor", func() bool {
		pid, _ := strconv.Atoi(strings.TrimSpace(try("systemctl", "show", "-p", "MainPID", "--value", "xpra-proxy.service")))
		if pid != 0 && pid != before && strings.TrimSpace(try("systemctl", "is-active", "xpra-proxy.service")) == "active" {
			after = pid
			return true
		}
		return false
	})
	ready := time.Since(killAt)
	time.Sleep(3 * time.Second) // the loops keep going against the new supervisor
	stop.Store(true)
	wg.Wait()

	t.Logf("supervisor %d SIGKILLed; systemd had %d active (READY) %v later", before, after, ready.Round(time.Millisecond))
	for _, l := range loops {
		var ok, lost int
		var worst, worstBefore, gap time.Duration
		first := time.Time{} // the first answer to a connection made after the kill
		for _, a := range l.done {
			if a.err == nil {
				ok++
				worst = max(worst, a.end.Sub(a.start))
				if a.end.Before(killAt) {
					worstBefore = max(worstBefore, a.end.Sub(a.start)) // the machine's own noise
				}
				if !a.start.Before(killed) && (first.IsZero() || a.end.Before(first)) {
					first = a.end
				}
				continue
			}
			switch {
			case errors.Is(a.err, syscall.ECONNREFUSED) || errors.Is(a.err, syscall.ENOENT) ||
				strings.Contains(a.err.Error(), "onnection refused"):
				t.Errorf("%s: refused at %v after the kill: %v", l.name, a.start.Sub(killAt).Round(time.Millisecond), a.err)
			case a.start.Before(killed) && a.end.After(killAt):
				lost++ // accepted by the supervisor that died
				t.Logf("%s: a connection in flight at the kill was lost: %v", l.name, a.err)
			default:
				t.Errorf("%s: failed, started %v after the kill: %v", l.name, a.start.Sub(killAt).Round(time.Millisecond), a.err)
			}
		}
		if !first.IsZero() {
			gap = first.Sub(killAt)
		}
		t.Logf("%s loop across the SIGKILL: %d answered, %d lost in flight, worst wait %v (%v before the kill), first answer to a connection made after the kill %v after it",
			l.name, ok, lost, worst.Round(time.Millisecond), worstBefore.Round(time.Millisecond), gap.Round(time.Millisecond))
		if lost > 1 {
			t.Errorf("%s: %d connections lost; only the one in flight at the kill may be", l.name, lost)
		}
		if first.IsZero() {
			t.Errorf("%s: no connection made after the kill was answered", l.name)
		}
	}
	if !alive(b.relay) || b.attached.disconnected() {
		t.Errorf("the relay worker %d of the attached client (alive: %v) or the client went with the supervisor:\n%s",
			b.relay, alive(b.relay), b.attached.out)
	}
	s, err := b.lc.Session(context.Background(), b.requested.ID)
	if err != nil || s.Leader != b.requested.Leader || s.State == "closing" {
		t.Fatalf("the session after the SIGKILL: %+v %v", s, err)
	}
	// The new supervisor logs users in and relays them.
	n := relayedTo(":101")
	if _, err := probe.Run(context.Background(), probe.Options{URL: "socket://" + testUser + ":" + testPassword + "@" + unixSocket,
		Request: probe.Connect, Timeout: 60 * time.Second}); err != nil {
		t.Fatalf("connecting after the SIGKILL: %v", err)
	}
	waitFor(t, 10*time.Second, "the connection after the SIGKILL to be relayed to :101", func() bool { return relayedTo(":101") == n+1 })
}

func (b *bed) cleanup(t *testing.T) {
	if b.attached != nil {
		b.attached.stop()
	}
	if t.Failed() {
		t.Logf("journal of the service:\n%s", journal("xpra-proxy.service"))
		t.Logf("journal of the sessions:\n%s", journal("xpra-proxy-session-*"))
	}
	for _, s := range b.proxySessions(t) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := b.lc.Terminate(ctx, s.ID); err != nil {
			t.Errorf("terminating session %s: %v", s.ID, err)
		}
		cancel()
	}
	exec.Command("systemctl", "stop", "xpra-proxy.service", "xpra-proxy.socket", "xpra-proxy-unix.socket").Run()
	ss, _ := b.lc.ListSessions(context.Background(), logind.AnyUser)
	for _, s := range ss {
		if s.State == "closing" {
			t.Errorf("session %s of %s (%s) left closing", s.ID, s.User, s.Service)
		}
	}
}

// proxySessions are logind's sessions with the proxy's PAM service.
func (b *bed) proxySessions(t *testing.T) []logind.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all, err := b.lc.ListSessions(ctx, logind.AnyUser)
	if err != nil {
		t.Fatal(err)
	}
	var out []logind.Session
	for _, s := range all {
		if s.IsProxy() {
			out = append(out, s)
		}
	}
	return out
}

// userLogin logs the user in through the testbed's own PAM service, as a
// unit that runs until stopped, and returns its session.
func (b *bed) userLogin(t *testing.T, unit string) logind.Session {
	t.Helper()
	sh(t, "systemd-run", "--unit="+unit, "-p", "PAMName=testbed-login", "-p", "User="+testUser,
		"-p", "Environment=XDG_SESSION_CLASS=user XDG_SESSION_TYPE=tty", "/bin/sh", "-c", "sleep 600 & exec sleep 600")
	var s logind.Session
	waitFor(t, 15*time.Second, "the user's login session", func() bool {
		pid, _ := strconv.Atoi(strings.TrimSpace(try("systemctl", "show", "-p", "MainPID", "--value", unit)))
		var err error
		s, err = b.lc.SessionByPID(context.Background(), uint32(pid))
		return err == nil && s.Service == "testbed-login"
	})
	return s
}

// client is a real xpra client attached in an Xvfb of its own.
type client struct {
	out  *proxylab.Buffer
	stop func()
}

func (c *client) disconnected() bool {
	s := c.out.String()
	return strings.Contains(s, "Disconnect") || strings.Contains(s, "connection lost") || strings.Contains(s, "server shutdown")
}

func startClient(t *testing.T, url string, extra ...string) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"-a", "-s", "-screen 0 1280x1024x24", "xpra", "attach", url,
		"--mdns=no", "--pulseaudio=no", "--notifications=no", "--opengl=no", "--speaker=off", "--microphone=off",
		"--webcam=no", "--printing=no", "--file-transfer=no", "--tray=no", "--system-tray=no", "--clipboard=no"}, extra...)
	cmd := exec.CommandContext(ctx, "xvfb-run", args...)
	cmd.Env = clientEnv()
	cmd.Dir = "/"
	out := &proxylab.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &client{out: out}
	c.stop = sync.OnceFunc(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); cancel(); cmd.Wait() })
	waitFor(t, 60*time.Second, "xpra attach to say Attached", func() bool {
		return strings.Contains(out.String(), "Attached to") || cmd.ProcessState != nil
	})
	if !strings.Contains(out.String(), "Attached to") {
		c.stop()
		t.Fatalf("xpra attach %s:\n%s", url, out)
	}
	return c
}

func clientEnv() []string {
	return []string{"PATH=" + cleanPath, "HOME=/root", "LANG=C.UTF-8", "XDG_RUNTIME_DIR=" + clientRun}
}

// xpra runs the real xpra 3.1.3 client as root (an admin would).
func xpra(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "xpra", args...)
	cmd.Env = clientEnv()
	cmd.Dir = "/"
	out, _ := cmd.CombinedOutput() // the exit code varies; the output says what happened
	return string(out)
}

func refusal(err error) string {
	var de *conn.DisconnectError
	if errors.As(err, &de) {
		return strings.TrimSpace(de.Reason + " " + strings.Join(de.Details, " "))
	}
	return ""
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := tryErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func tryErr(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = []string{"PATH=" + cleanPath, "LANG=C.UTF-8"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func try(name string, args ...string) string {
	out, _ := tryErr(name, args...)
	return out
}

// relayedTo counts the relays to display the journal has seen start.
func relayedTo(display string) int {
	n := 0
	for _, line := range strings.Split(try("journalctl", "--no-pager", "-o", "cat", "-u", "xpra-proxy.service"), "\n") {
		if strings.Contains(line, "msg=relaying") && strings.Contains(line, " display="+display+" ") {
			n++
		}
	}
	return n
}

func journal(unit string) string {
	return try("journalctl", "--no-pager", "-o", "cat", "-n", "300", "-u", unit)
}

func chpasswd(t *testing.T, name, password string) {
	t.Helper()
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
}

// writeCert makes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "testbed"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"testbed", "localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func loginctlShow(t *testing.T, id string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(sh(t, "loginctl", "show-session", id), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func supervisorPID(t *testing.T) int {
	t.Helper()
	pid, _ := strconv.Atoi(strings.TrimSpace(try("systemctl", "show", "-p", "MainPID", "--value", "xpra-proxy.service")))
	if pid == 0 {
		t.Fatalf("xpra-proxy.service has no main process\n%s", journal("xpra-proxy.service"))
	}
	return pid
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// xListening: an X server listens for display n (its abstract socket).
func xListening(n int) bool {
	b, _ := os.ReadFile("/proc/net/unix")
	return strings.Contains(string(b), fmt.Sprintf("@/tmp/.X11-unix/X%d\n", n))
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// running lists the pids whose executable is exe.
func running(exe string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && target == exe {
			out = append(out, pid)
		}
	}
	return out
}

func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err == nil && proclab.Read(n).Status["PPid"] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// findChild waits for a worker of the supervisor in mode ("--relay",
// "--preauth") other than those in old, and returns its pid.
func findChild(t *testing.T, supervisor int, mode string, old ...int) int {
	t.Helper()
	found := 0
	waitFor(t, 15*time.Second, "a new "+mode+" worker", func() bool {
		for _, k := range workers(supervisor, mode) {
			if !slices.Contains(old, k) {
				found = k
				return true
			}
		}
		return false
	})
	return found
}

// workers are the supervisor's children in mode, past their start-up
// checks (no_new_privs is set first thing).
func workers(supervisor int, mode string) []int {
	var out []int
	for _, k := range children(supervisor) {
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
		args := strings.Split(string(cl), "\x00")
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", k))
		if strings.TrimSpace(string(comm)) == child.WaitingComm {
			continue // a warm relay waiting for a login: no one's relay yet
		}
		if len(args) > 1 && strings.HasPrefix(filepath.Base(args[0]), "xpra-proxy-") && slices.Contains(args, mode) &&
			proclab.Read(k).Status["NoNewPrivs"] == "1" {
			out = append(out, k)
		}
	}
	return out
}

func capBit(hex string, bit uint) bool {
	v, err := strconv.ParseUint(hex, 16, 64)
	return err == nil && v&(1<<bit) != 0
}
