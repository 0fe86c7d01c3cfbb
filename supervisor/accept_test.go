// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// The accept-to-relay tests run the supervisor's whole path in this
// process (Serve, accept, the limits, handle, the spares, handOver,
// startPreauth's exec, exchange, authenticate, startRelay's exec, the
// registry, the relay's reaping) with real listeners, real exec'd
// children under their real credentials and descriptor contracts
// (child.Preauth, child.Relay), and a client on a real socket. The two
// children are this test binary, copied beside each other under the
// programs' names (TestMain picks the part by the name it was exec'd
// as): a pre-auth process that takes "USER PASSWORD\n" from the client
// instead of a hello, and a relay that writes back what it was given
// (its ids, environment, launch document, hand-over memfd) instead of
// relaying. The real programs are driven by the e2e tests; these show
// the supervisor's side, including the failures e2e cannot arrange.

func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "xpra-proxy-preauth":
		os.Exit(preauthDouble())
	case "xpra-proxy-worker":
		os.Exit(relayDouble())
	case "xpra-proxy-metrics":
		os.Exit(metricsDouble())
	}
	// What the test process inherited from whoever ran it (a shell's
	// descriptors, a CI runner's) would reach the children, which refuse
	// to start with a descriptor not passed by name; the service gets
	// none from systemd.
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, e := range ents {
			if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
				unix.CloseOnExec(fd)
			}
		}
	}
	os.Exit(m.Run())
}

// doubleFail ends a double with a line on the client connection (when it
// has one), which the test then shows.
func doubleFail(client io.Writer, format string, args ...any) int {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "double:", msg)
	if client != nil {
		fmt.Fprintf(client, "double failed: %s\n", msg)
	}
	return 1
}

// preauthDouble is the pre-auth process of these tests.
func preauthDouble() int {
	var with []string
	if slices.Contains(os.Args[1:], "--listener=tcp") {
		with = append(with, "front")
	}
	fds, err := child.Preauth.Take(with...)
	if err != nil {
		return doubleFail(nil, "take: %v", err)
	}
	c, err := ipc.FromFile(fds["ipc"])
	if err != nil {
		return doubleFail(nil, "ipc: %v", err)
	}
	m, client, _, err := c.Recv()
	if errors.Is(err, ipc.ErrClosed) {
		return 0 // a spare let go
	}
	if err != nil || m.Kind != ipc.Connection || client == nil {
		return doubleFail(nil, "want a connection, got %q %v", m.Kind, err)
	}
	defer client.Close()
	in := bufio.NewReader(io.LimitReader(client, 512))
	if m.Proxied {
		// A trusted balancer's connection: "FROM HOST:PORT" stands for
		// the PROXY header the real pre-auth process parses.
		line, err := in.ReadString('\n')
		from, ok := strings.CutPrefix(strings.TrimSpace(line), "FROM ")
		if err != nil || !ok {
			return doubleFail(client, "proxied: want FROM HOST:PORT, got %q", line)
		}
		if err := c.Send(ipc.Message{Kind: ipc.ProxyHeader, Peer: from}, nil); err != nil {
			return doubleFail(client, "proxy header: %v", err)
		}
		m, _, _, err = c.Recv()
		switch {
		case err != nil:
			return doubleFail(client, "proxy header: %v", err)
		case m.Kind == ipc.Denied:
			fmt.Fprintf(client, "denied: %q\n", m.Reason)
			return 0
		case m.Kind != ipc.ProxyAccepted:
			return doubleFail(client, "want proxy-accepted, got %q", m.Kind)
		}
	}
	line, err := in.ReadString('\n')
	if err != nil {
		return 0 // the client left
	}
	who := strings.Fields(line)
	if len(who) != 2 {
		return doubleFail(client, "want USER PASSWORD, got %q", line)
	}
	if err := c.Send(ipc.Message{Kind: ipc.AuthBegin, Username: who[0], Digests: hmacDigests, SaltDigests: hmacDigests[:6]}, nil); err != nil {
		return doubleFail(client, "begin: %v", err)
	}
	m, _, _, err = c.Recv()
	if err != nil {
		return doubleFail(client, "challenge: %v", err)
	}
	verify := ipc.Message{Kind: ipc.AuthVerify}
	switch m.Kind {
	case ipc.Denied:
		fmt.Fprintf(client, "denied: %s %q\n", m.Reason, m.Details)
		return 0
	case ipc.Challenge:
		if verify.ClientSalt, err = digest.NewClientSalt(m.SaltDigest, len(m.Salt)); err != nil {
			return doubleFail(client, "client salt: %v", err)
		}
		combined, err := digest.CombineSalts(m.SaltDigest, verify.ClientSalt, m.Salt)
		if err != nil {
			return doubleFail(client, "salts: %v", err)
		}
		if verify.Response, err = digest.Response(m.Digest, []byte(who[1]), combined); err != nil {
			return doubleFail(client, "response: %v", err)
		}
	case ipc.NoChallenge:
	default:
		return doubleFail(client, "want a challenge, got %q", m.Kind)
	}
	handover, err := launch.Memfd("handover", []byte("handed over for "+who[0]))
	if err != nil {
		return doubleFail(client, "memfd: %v", err)
	}
	if err := c.Send(verify, handover); err != nil {
		return doubleFail(client, "verify: %v", err)
	}
	m, _, _, err = c.Recv()
	switch {
	case err != nil:
		return doubleFail(client, "verdict: %v", err)
	case m.Kind == ipc.Denied:
		fmt.Fprintf(client, "denied: %s %q\n", m.Reason, m.Details)
	case m.Kind != ipc.Accepted || m.Worker <= 0:
		return doubleFail(client, "want accepted, got %q worker %d", m.Kind, m.Worker)
	}
	return 0 // accepted: the relay has the connection now
}

// relayReport is what the relay double was given.
type relayReport struct {
	UID, GID int
	Groups   []int
	Env      []string
	Args     []string
	Launch   launch.Launch
	Handover string
	Memfd    bool
}

// relayDouble is the relay worker of these tests: it reports and then
// holds the connection until the client closes it.
func relayDouble() int {
	var with []string
	if slices.ContainsFunc(os.Args[1:], func(a string) bool { return strings.HasPrefix(a, "--start-session=") }) {
		with = append(with, "session")
	}
	if slices.Contains(os.Args[1:], "--report") {
		with = append(with, "report")
	}
	spec, early := &child.Relay, slices.Contains(os.Args[1:], "--early")
	if early {
		spec = &child.EarlyRelay
	}
	fds, err := spec.Take(with...)
	if err != nil {
		return doubleFail(nil, "take: %v", err)
	}
	if early {
		// As the real worker waits for its client (ipc.RelayFile).
		start, err := ipc.FromFile(fds["start"])
		if err != nil {
			return doubleFail(nil, "start: %v", err)
		}
		files, err := start.RecvRelayFiles()
		if errors.Is(err, ipc.ErrClosed) {
			return 0 // dropped: the login failed
		}
		if err != nil {
			return doubleFail(nil, "start: %v", err)
		}
		maps.Copy(fds, files)
	}
	client := fds["client"]
	r := relayReport{UID: os.Getuid(), GID: os.Getgid(), Args: os.Args[1:], Memfd: launch.IsMemfd(fds["handover"])}
	r.Groups, _ = os.Getgroups()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, namedfd.EnvVar+"=") {
			r.Env = append(r.Env, kv)
		}
	}
	if r.Launch, err = launch.Read(fds["launch"]); err != nil {
		return doubleFail(client, "launch: %v", err)
	}
	b, err := launch.ReadAll(fds["handover"], 4096)
	if err != nil {
		return doubleFail(client, "handover: %v", err)
	}
	r.Handover = string(b)
	out, err := json.Marshal(r)
	if err != nil {
		return doubleFail(client, "%v", err)
	}
	sent, _ := fmt.Fprintf(client, "relay %s\n", out)
	got, _ := io.Copy(io.Discard, client)
	if f := fds["report"]; f != nil {
		// As the real worker reports its end (ipc.RelayEnded).
		rc, err := ipc.FromFile(f)
		if err != nil {
			return doubleFail(nil, "report: %v", err)
		}
		if err := rc.Send(ipc.Message{Kind: ipc.RelayEnded, Display: ":7", Reason: "client left\n",
			Figures: map[string]int64{ipc.FigureBytesFromClient: got, ipc.FigureBytesFromServer: int64(sent)}}, nil); err != nil {
			return doubleFail(nil, "report: %v", err)
		}
	}
	return 0
}

// logRecorder keeps the supervisor's log messages, and its audit records
// as the journal would get them: through the service's real handler
// (package logging) with a Send that keeps them.
type logRecorder struct {
	mu     *sync.Mutex
	msgs   *[]string
	audits *[]map[string]string
	lines  *lineSink // the text lines of records that are not audit records
	inner  slog.Handler
}

// lineSink keeps what the handler writes; written under logRecorder.mu.
type lineSink struct{ lines []string }

func (w *lineSink) Write(b []byte) (int, error) {
	w.lines = append(w.lines, string(b))
	return len(b), nil
}

// hasLine says whether a logged line holds every one of parts.
func (h logRecorder) hasLine(parts ...string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines.lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func newLogRecorder() logRecorder {
	h := logRecorder{mu: &sync.Mutex{}, msgs: new([]string), audits: new([]map[string]string), lines: &lineSink{}}
	h.inner = logging.NewHandler(h.lines, logging.Options{Level: slog.LevelDebug, Journal: true,
		Send: func(msg string, p logging.Priority, fields map[string]string) error {
			fields["PRIORITY"] = strconv.Itoa(int(p))
			*h.audits = append(*h.audits, fields) // under h.mu: Handle holds it
			return nil
		}})
	return h
}

func (h logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h logRecorder) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.msgs = append(*h.msgs, r.Message)
	return h.inner.Handle(ctx, r)
}
func (h logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	h.inner = h.inner.WithAttrs(as)
	return h
}
func (h logRecorder) WithGroup(name string) slog.Handler {
	h.inner = h.inner.WithGroup(name)
	return h
}

// audit returns the audit records with id whose fields include want.
func (h logRecorder) audit(id audit.MessageID, want map[string]string) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range *h.audits {
		if r["MESSAGE_ID"] != string(id) {
			continue
		}
		ok := true
		for k, v := range want {
			if r[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// allAudits is every audit record, for failure messages.
func (h logRecorder) allAudits() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.audits)
}

func (h logRecorder) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.msgs)
}

func (h logRecorder) has(msg string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(*h.msgs, msg)
}

// served is a supervisor serving a unix and a TCP listener with the
// doubles as its programs.
type served struct {
	s           *Supervisor
	dir         string
	unixPath    string
	tcpAddr     string
	metricsAddr string // with --metrics-bind: what the metrics process serves
	logs        logRecorder
	stop        func() error // ends Serve and returns its error
}

// serveDoubles starts a supervisor with password modules (password
// "secret"), nobody as the session user, and the flags given.
func serveDoubles(t *testing.T, flags ...string) *served {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the children run as the pre-auth user and as nobody")
	}
	// Not t.TempDir: the children, unprivileged, exec programs in it.
	dir, err := os.MkdirTemp("", "xpra-proxy-accept-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"xpra-proxy-preauth", "xpra-proxy-worker", "xpra-proxy-metrics"} {
		copyFile(t, exe, filepath.Join(dir, name))
	}
	cfg, err := ParseFlags(append([]string{
		"--auth=password,value=secret", "--tcp-auth=password,value=secret",
		"--worker=" + filepath.Join(dir, "xpra-proxy-worker"), "--run-dir=" + filepath.Join(dir, "run"),
		"--control-socket=off", "--html=off", "--max-uid=65534", "--start-session=never",
	}, flags...))
	if err != nil {
		t.Fatal(err)
	}
	sv := &served{dir: dir, logs: newLogRecorder(), unixPath: filepath.Join(dir, "sock")}
	if sv.s, err = New(cfg, slog.New(sv.logs)); err != nil {
		t.Fatal(err)
	}
	ul, err := net.Listen("unix", sv.unixPath)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sv.tcpAddr = tl.Addr().String()
	ls := []Listener{{Listener: ul, Type: "unix"}, {Listener: tl, Type: "tcp"}}
	if cfg.MetricsBind != "" {
		ml, err := net.Listen("tcp", cfg.MetricsBind)
		if err != nil {
			t.Fatal(err)
		}
		sv.metricsAddr = ml.Addr().String()
		ls = append(ls, Listener{Listener: ml, Type: MetricsType})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sv.s.Serve(ctx, ls) }()
	var once sync.Once
	var serveErr error
	sv.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(30 * time.Second):
				serveErr = errors.New("Serve did not return within 30 s of its context ending")
			}
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := sv.stop(); err != nil {
			t.Error(err)
		}
		// The clients are closed by now (their cleanups run first): the
		// relays end, and write the registry in dir, before it goes.
		for deadline := time.Now().Add(20 * time.Second); sv.s.relays.Load() != 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%d relays still run 20 s after their clients left", sv.s.relays.Load())
				break
			}
		}
	})
	return sv
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// login connects, sends "USER PASSWORD" and returns the connection
// and the first line that comes back ("" when it closed without one).
func (sv *served) login(t *testing.T, network, userPass string) (net.Conn, string) {
	t.Helper()
	addr := sv.unixPath
	if network == "tcp" {
		addr = sv.tcpAddr
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, userPass+"\n"); err != nil {
		t.Fatal(err)
	}
	return c, readLine(t, c)
}

func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("reading the answer (got %q): %v", line, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// report parses the relay double's line.
func report(t *testing.T, line string) relayReport {
	t.Helper()
	var r relayReport
	js, ok := strings.CutPrefix(line, "relay ")
	if !ok {
		t.Fatalf("no relay: %q", line)
	}
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("relay report %q: %v", js, err)
	}
	return r
}

// eventually waits up to 20 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20 s: %s", what)
		}
	}
}

func registered(t *testing.T, sv *served) []connlist.Record {
	t.Helper()
	recs, err := connlist.ReadRegistry(filepath.Join(sv.dir, "run", connlist.RegistryFile))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestAcceptToRelay logs in over each listener and checks what the relay
// was given, and that it is counted, registered and forgotten when it
// ends; and that a wrong answer or an account no one may become gets no
// relay.
func TestAcceptToRelay(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	var wantGroups []int
	gids, err := nobody.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gids {
		n, _ := strconv.Atoi(g)
		wantGroups = append(wantGroups, n)
	}
	slices.Sort(wantGroups)
	// Never in a relay's environment: the supervisor's own is not passed.
	t.Setenv("XPRA_PROXY_TEST_CANARY", "leaked")
	// Every relay exec'd with its arguments (warm relays: TestWarmRelay).
	sv := serveDoubles(t, "--warm-relays=0")
	for _, tc := range []struct {
		name, network, login string
		want                 string // the denial; "" for a relay
	}{
		{"unix right password", "unix", "nobody secret", ""},
		{"tcp right password", "tcp", "nobody secret", ""},
		{"wrong password", "unix", "nobody wrong", `denied: authentication failed []`},
		{"root, whom no one may become", "unix", "root secret", `denied: authentication failed []`},
		{"a system account under min-uid", "unix", "daemon secret", `denied: authentication failed []`},
		{"no such user", "unix", "no-such-user-x secret", `denied: authentication failed []`},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			before := sv.s.relays.Load()
			loginStart := time.Now()
			c, line := sv.login(t, tc.network, tc.login)
			if tc.want != "" {
				if line != tc.want {
					t.Fatalf("got %q, want %q", line, tc.want)
				}
				if n := sv.s.relays.Load(); n != before {
					t.Errorf("relays %d after a refusal, was %d", n, before)
				}
				return
			}
			r := report(t, line)
			if r.UID != 65534 || r.GID != 65534 {
				t.Errorf("relay runs as uid %d gid %d, want nobody's 65534", r.UID, r.GID)
			}
			slices.Sort(r.Groups)
			if !slices.Equal(r.Groups, wantGroups) {
				t.Errorf("relay's groups %v, want nobody's %v", r.Groups, wantGroups)
			}
			wantEnv := []string{"HOME=" + nobody.HomeDir, "LANG=C.UTF-8", "LOGNAME=nobody",
				"PATH=/usr/local/bin:/usr/bin:/bin", "USER=nobody", "XDG_RUNTIME_DIR=/run/user/65534"}
			slices.Sort(r.Env)
			if !slices.Equal(r.Env, wantEnv) {
				t.Errorf("relay's environment\n%q\nwant\n%q", r.Env, wantEnv)
			}
			l := r.Launch
			peer := "unix:" + sv.unixPath
			if tc.network == "tcp" {
				peer = c.LocalAddr().String()
			}
			if l.Username != "nobody" || l.UID != 65534 || l.GID != 65534 || l.Home != nobody.HomeDir ||
				l.Listener != tc.network || l.Transport != tc.network || l.Peer != peer || l.Module != "password" {
				t.Errorf("launch document %+v (want nobody, listener and transport %s, peer %s, module password)", l, tc.network, peer)
			}
			// The supervisor logs at debug here: the relay is given the
			// accept's time, to log its setup stages from it.
			args := r.Args
			if n := len(args); n > 0 && strings.HasPrefix(args[n-1], "--setup-start=") {
				ns, err := strconv.ParseInt(strings.TrimPrefix(args[n-1], "--setup-start="), 10, 64)
				if at := time.Unix(0, ns); err != nil || at.Before(loginStart) || at.After(time.Now()) {
					t.Errorf("relay's %s: not the accept's time (login from %v)", args[n-1], loginStart)
				}
				args = args[:n-1]
			} else {
				t.Errorf("relay's arguments %q lack --setup-start, with the supervisor at debug", args)
			}
			wantArgs := []string{"--relay", "--listener=" + tc.network, "--transport=" + tc.network, "--peer=" + peer, "--report"}
			if !slices.Equal(args, wantArgs) {
				t.Errorf("relay's arguments %q, want %q", args, wantArgs)
			}
			if !r.Memfd || r.Handover != "handed over for nobody" {
				t.Errorf("hand-over: memfd %v, %q; want the pre-auth process's memfd", r.Memfd, r.Handover)
			}
			var pid int
			for _, rec := range registered(t, sv) {
				if rec.User == "nobody" && rec.Source == peer && rec.Listener == tc.network && rec.Transport == tc.network && rec.StartTicks != 0 {
					pid = rec.Pid
				}
			}
			if pid == 0 {
				t.Fatalf("relay for %s not in the registry: %+v", peer, registered(t, sv))
			}
			if n := sv.s.relays.Load(); n != before+1 {
				t.Errorf("relays %d, want %d", n, before+1)
			}
			// One debug line with each stage of the setup.
			eventually(t, "the setup timeline logged", func() bool {
				return sv.logs.hasLine(`msg="setup timeline"`, "worker="+strconv.Itoa(pid), "result=relayed",
					" accept=", " handover=", " hello=", " challenge=", " answer=", " verdict=", " relay_exec=", " accepted_sent=")
			})
			// The client leaves: the relay ends, is counted off and
			// leaves the registry.
			c.Close()
			eventually(t, "the relay's end counted", func() bool { return sv.s.relays.Load() == before })
			for _, rec := range registered(t, sv) {
				if rec.Pid == pid {
					t.Errorf("ended relay %d still registered", pid)
				}
			}
			// The audit records of the login and the relay, the bytes as
			// the relay reported them, its words made one line.
			src := "unix:" + sv.unixPath
			if tc.network == "tcp" {
				src = "127.0.0.1"
			}
			who := map[string]string{"USER": "nobody", "SOURCE": src, "TRANSPORT": tc.network, "WORKER": strconv.Itoa(pid)}
			with := func(m map[string]string) map[string]string {
				maps.Copy(m, who)
				return m
			}
			for _, w := range []struct {
				id   audit.MessageID
				want map[string]string
			}{
				{audit.LoginSucceeded, with(map[string]string{"PRIORITY": "6", "MODULE": "password", "UID": "65534"})},
				{audit.RelayStarted, with(map[string]string{"PRIORITY": "6"})},
				{audit.RelayEnded, with(map[string]string{"PRIORITY": "6", "DISPLAY": ":7", "REASON": "client left?",
					"BYTES_FROM_CLIENT": "0", "BYTES_FROM_SERVER": strconv.Itoa(len(line) + 1)})},
			} {
				if recs := sv.logs.audit(w.id, w.want); len(recs) != 1 {
					t.Errorf("%d records %s with %v; all: %v", len(recs), w.id, w.want, sv.logs.allAudits())
				}
			}
			if recs := sv.logs.audit(audit.RelayEnded, who); len(recs) == 1 {
				if d, err := strconv.ParseFloat(recs[0]["DURATION_SEC"], 64); err != nil || d <= 0 {
					t.Errorf("relay's DURATION_SEC %q", recs[0]["DURATION_SEC"])
				}
			}
		})
	}
	if !sv.logs.has("authenticated") || !sv.logs.has("authentication failed") || !sv.logs.has("relay worker ended") {
		t.Errorf("log lacks a grant, a refusal or a relay's end: %q", sv.logs.all())
	}
	// Each refusal has its record, at warning, with the module that
	// judged and why.
	for _, u := range []string{"nobody", "root", "daemon", "no-such-user-x"} {
		recs := sv.logs.audit(audit.LoginFailed, map[string]string{"PRIORITY": "4", "USER": u,
			"SOURCE": "unix:" + sv.unixPath, "TRANSPORT": "unix", "MODULE": "password"})
		if len(recs) != 1 || recs[0]["REASON"] == "" {
			t.Errorf("%s: login-failed records %v; all: %v", u, recs, sv.logs.allAudits())
		}
	}
}

// TestRelayLimitReleased: max-relays-per-user refuses a second relay
// while the first lives, and counts it off when it ends, also when the
// relay failed to start.
func TestRelayLimitReleased(t *testing.T) {
	// Relays exec'd each time: the test makes the worker unstartable, which
	// a warm relay (already running that file) would both bypass and hold busy.
	sv := serveDoubles(t, "--max-relays-per-user=1", "--warm-relays=0")
	first, line := sv.login(t, "unix", "nobody secret")
	report(t, line)
	if _, line := sv.login(t, "unix", "nobody secret"); !strings.HasPrefix(line, `denied: too many connections ["nobody has 1 connections`) {
		t.Fatalf("second relay: got %q, want too many connections", line)
	}
	first.Close()
	eventually(t, "the first relay's end counted", func() bool { return sv.s.relays.Load() == 0 })
	third, line := sv.login(t, "unix", "nobody secret")
	report(t, line)
	third.Close()
	eventually(t, "the third relay's end counted", func() bool { return sv.s.relays.Load() == 0 })

	// A worker program that cannot be exec'd: the client is told, and
	// the failed start does not count toward the limit.
	if err := os.WriteFile(sv.s.cfg.Worker, []byte("not a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, line := sv.login(t, "unix", "nobody secret"); line != `denied: server error ["failed to start the proxy instance"]` {
			t.Fatalf("start %d of an unstartable relay: got %q", i+1, line)
		}
	}
	if !sv.logs.has("starting relay worker") {
		t.Errorf("the failed start is not logged: %q", sv.logs.all())
	}
}

// TestSourceRefusedBeforePreauth: over per-source-max-startups, a
// connection is closed without a pre-auth process, and the one holding
// the slot still logs in.
func TestSourceRefusedBeforePreauth(t *testing.T) {
	sv := serveDoubles(t, "--per-source-max-startups=1")
	holder, err := net.Dial("tcp", sv.tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	// The holder is admitted once the supervisor has accepted it; a
	// pre-auth process for it then exists beside the spares.
	eventually(t, "the first connection admitted", func() bool { return sv.s.figures()["preauth"] == 1 })
	refused, err := net.Dial("tcp", sv.tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	if err := refused.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := refused.Read(make([]byte, 64)); n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a connection over the source's limit read %d bytes, %v; want it closed", n, err)
	}
	eventually(t, "the refusal logged", func() bool { return sv.logs.has("connection refused") })
	if _, err := io.WriteString(holder, "nobody secret\n"); err != nil {
		t.Fatal(err)
	}
	report(t, readLine(t, holder))
}

// TestSpareDied: a spare pre-auth process that died while it waited is
// not handed the connection: another is started.
func TestSpareDied(t *testing.T) {
	sv := serveDoubles(t)
	var p *preauthProc
	eventually(t, "a unix spare", func() bool {
		sv.s.spares.mu.Lock()
		defer sv.s.spares.mu.Unlock()
		p = sv.s.spares.ready["unix"]
		return p != nil
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Reaped first: a spare that dies while the connection is being sent
	// to it takes the connection with it, as any pre-auth process that
	// dies after its hand-over does.
	<-p.done
	_, line := sv.login(t, "unix", "nobody secret")
	report(t, line)
	if p.abnormalEnd() != "killed by signal killed" {
		t.Errorf("the spare's end reads %q", p.abnormalEnd())
	}
}

// TestStuckPreauthKilled: a pre-auth process that never gives a verdict
// is killed at the login timeout (plus the supervisor's 5 s margin), and
// the connection closed.
func TestStuckPreauthKilled(t *testing.T) {
	sv := serveDoubles(t, "--login-timeout=1s")
	c, err := net.Dial("unix", sv.unixPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if line := readLine(t, c); line != "" {
		t.Fatalf("got %q", line)
	}
	if took := time.Since(start); took < 5*time.Second || took > 25*time.Second {
		t.Errorf("closed after %v, want the login timeout plus 5 s", took)
	}
	eventually(t, "the kill logged", func() bool { return sv.logs.has("pre-auth process over its time; killing it") })
}

// TestServeEndsSpares: when Serve ends, its spare pre-auth processes
// exit (they are let go by closing their channels).
func TestServeEndsSpares(t *testing.T) {
	sv := serveDoubles(t)
	var ps []*preauthProc
	eventually(t, "both spares", func() bool {
		sv.s.spares.mu.Lock()
		defer sv.s.spares.mu.Unlock()
		ps = ps[:0]
		for _, p := range sv.s.spares.ready {
			ps = append(ps, p)
		}
		return len(ps) == 2
	})
	if err := sv.stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		select {
		case <-p.done:
			if p.status != nil {
				t.Errorf("spare %d ended with %v, want a clean exit", p.pid, p.status)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("spare %d still runs 20 s after Serve ended", p.pid)
		}
	}
}

// TestPenaltyAudit: a wrong password from a TCP source brings a penalty,
// and both have their audit record.
func TestPenaltyAudit(t *testing.T) {
	sv := serveDoubles(t, "--per-source-penalty=30s")
	if _, line := sv.login(t, "tcp", "nobody wrong"); !strings.HasPrefix(line, "denied: authentication failed") {
		t.Fatalf("wrong password: %q", line)
	}
	src := map[string]string{"SOURCE": "127.0.0.1", "PRIORITY": "4"}
	failed := sv.logs.audit(audit.LoginFailed, map[string]string{"USER": "nobody", "TRANSPORT": "tcp", "MODULE": "password"})
	if len(failed) != 1 || failed[0]["SOURCE"] != "127.0.0.1" {
		t.Errorf("login-failed records %v", failed)
	}
	recs := sv.logs.audit(audit.Penalty, src)
	if len(recs) != 1 {
		t.Fatalf("penalty records %v; all: %v", recs, sv.logs.allAudits())
	}
	r := recs[0]
	until, err := time.Parse(time.RFC3339, r["UNTIL"])
	if r["FAILURES"] != "1" || err != nil || time.Until(until) < 20*time.Second || time.Until(until) > 31*time.Second {
		t.Errorf("penalty record %v (until: %v)", r, err)
	}
	if d, err := strconv.ParseFloat(r["PENALTY_SEC"], 64); err != nil || d < 29 || d > 30.001 {
		t.Errorf("PENALTY_SEC %q, want about 30", r["PENALTY_SEC"])
	}
}

// TestProxyProtocolSource: a connection from a peer in
// proxy-protocol-from is counted and judged by the source its PROXY
// header names (the double's FROM line): the relay, the registry
// (xpra-proxy list), PAM_RHOST's source and the audit records get that
// address; a wrong password penalises that source alone, not the
// balancer nor another client behind it; a peer outside the list is not
// asked for a header at all.
func TestProxyProtocolSource(t *testing.T) {
	sv := serveDoubles(t, "--proxy-protocol-from=127.0.0.1/32", "--per-source-penalty=30s")
	viaBalancer := func(t *testing.T, from, userPass string) (net.Conn, string) {
		t.Helper()
		c, err := net.Dial("tcp", sv.tcpAddr) // from 127.0.0.1: trusted
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "FROM "+from+"\n"+userPass+"\n"); err != nil {
			t.Fatal(err)
		}
		return c, readLine(t, c)
	}
	t.Run("relay gets the claimed source", func(t *testing.T) {
		c, line := viaBalancer(t, "192.0.2.7:41000", "nobody secret")
		r := report(t, line)
		if !slices.Contains(r.Args, "--peer=192.0.2.7:41000") {
			t.Errorf("relay args %q, want --peer=192.0.2.7:41000", r.Args)
		}
		eventually(t, "the relay registered", func() bool { return len(registered(t, sv)) == 1 })
		if rec := registered(t, sv)[0]; rec.Source != "192.0.2.7:41000" {
			t.Errorf("xpra-proxy list's source %q, want the client's", rec.Source)
		}
		ok := sv.logs.audit(audit.LoginSucceeded, map[string]string{"USER": "nobody"})
		if len(ok) != 1 || ok[0]["SOURCE"] != "192.0.2.7" {
			t.Errorf("login-succeeded records %v", ok)
		}
		c.Close()
		eventually(t, "the relay gone", func() bool { return len(registered(t, sv)) == 0 })
	})
	t.Run("penalty on the claimed source only", func(t *testing.T) {
		if _, line := viaBalancer(t, "192.0.2.66:41001", "nobody wrong"); !strings.HasPrefix(line, "denied: authentication failed") {
			t.Fatalf("wrong password: %q", line)
		}
		if recs := sv.logs.audit(audit.Penalty, map[string]string{"SOURCE": "192.0.2.66"}); len(recs) != 1 {
			t.Fatalf("penalty records %v", sv.logs.allAudits())
		}
		_, line := viaBalancer(t, "192.0.2.66:41002", "nobody secret")
		if !strings.HasPrefix(line, `denied: "disconnect: too many failed logins from your address, wait`) {
			t.Errorf("the penalised source again: %q", line)
		}
		eventually(t, "the refusal logged with the balancer as via", func() bool {
			return sv.logs.hasLine(`msg="connection refused"`, "peer=192.0.2.66:41002", "via=127.0.0.1:", "penalty until")
		})
		// Another client behind the same balancer, and the balancer's
		// own direct logins, are untouched.
		c, line := viaBalancer(t, "192.0.2.8:41003", "nobody secret")
		report(t, line)
		c.Close()
		if recs := sv.logs.audit(audit.Penalty, map[string]string{"SOURCE": "127.0.0.1"}); len(recs) != 0 {
			t.Errorf("the balancer was penalised: %v", recs)
		}
	})
	t.Run("untrusted peer is not proxied", func(t *testing.T) {
		// From 127.0.0.2, outside the list: the double gets no Proxied
		// flag and takes a FROM line for USER PASSWORD, which fails.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		u, err := d.Dial("tcp", sv.tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if _, err := io.WriteString(u, "nobody secret\n"); err != nil {
			t.Fatal(err)
		}
		r := report(t, readLine(t, u))
		if !slices.ContainsFunc(r.Args, func(a string) bool { return strings.HasPrefix(a, "--peer=127.0.0.2:") }) {
			t.Errorf("relay args %q, want the TCP peer 127.0.0.2", r.Args)
		}
	})
	t.Run("hostile claim", func(t *testing.T) {
		// What only a compromised pre-auth process could send: the
		// exchange ends there, with no relay (the process is killed at
		// the login timeout, as for any other protocol breach). The
		// relays of the subtests above end first, so that any relay
		// counted below is one a claim made.
		eventually(t, "the earlier relays ended", func() bool { return len(registered(t, sv)) == 0 })
		for _, from := range []string{"not-an-address", "192.0.2.1", "[fe80::1%eth0]:1"} {
			c, err := net.Dial("tcp", sv.tcpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "FROM "+from+"\nnobody secret\n"); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("PROXY header source %q", from)
			eventually(t, "the bad claim logged", func() bool {
				return sv.logs.hasLine(`msg="pre-auth protocol"`, strings.Trim(strconv.Quote(want), `"`))
			})
		}
		if n := len(registered(t, sv)); n != 0 {
			t.Errorf("%d relays after hostile claims", n)
		}
	})
}
