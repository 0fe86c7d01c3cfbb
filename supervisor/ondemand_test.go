// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/stats"
)

func testStarter(t testing.TB, mutate func(*SessionConfig)) *starter {
	t.Helper()
	cfg := sessionDefaults()
	cfg.SessionLeader = "/usr/libexec/xpra-proxy/xpra-proxy-session"
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	st, err := newStarter(cfg, slog.New(slog.DiscardHandler), newDisplayBook())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// The shipped file documents the session keys with their defaults.
func TestShippedSessionConfig(t *testing.T) {
	c := Defaults()
	if err := c.LoadFile("../etc/xpra-proxy.toml"); err != nil {
		t.Fatal(err)
	}
	d := sessionDefaults()
	got := c.SessionConfig
	if got.StartSession != d.StartSession || !slices.Equal(got.SessionCommand, d.SessionCommand) ||
		got.SessionDisplays != d.SessionDisplays || got.SessionStartTimeout != d.SessionStartTimeout ||
		!slices.Equal(got.SessionOverrides, d.SessionOverrides) || got.MaxSessionsPerUser != d.MaxSessionsPerUser ||
		len(got.SessionArgs) != 0 || len(got.SessionProperties) != 0 {
		t.Fatalf("shipped session settings %+v differ from the defaults %+v", got, d)
	}
}

func TestSessionConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.toml")
	worker := filepath.Join(dir, "worker")
	os.WriteFile(worker, nil, 0o755)
	tests := []struct {
		name    string
		toml    string
		args    []string
		check   func(SessionConfig) bool
		wantErr string
	}{
		{"defaults", "", nil, func(c SessionConfig) bool {
			return c.StartSession == StartOnRequest && c.SessionCommand[0] == "/usr/bin/xpra" && c.SessionDisplays == "100-999" &&
				c.SessionStartTimeout.Duration == 90*time.Second && c.MaxSessionsPerUser == 4 && filepath.IsAbs(c.SessionLeader)
		}, ""},
		{"file", `start-session = "auto"
session-command = ["/opt/xpra/bin/xpra"]
session-args = ["--start=xterm", "--mdns=no"]
session-properties = ["MemoryMax=2G", "ProtectSystem=full"]
session-displays = "200-209"
session-start-timeout = "20s"
session-overrides = ["dpi"]
session-leader = "/opt/leader"
max-sessions-per-user = 0
`, nil, func(c SessionConfig) bool {
			return c.StartSession == StartAuto && c.SessionCommand[0] == "/opt/xpra/bin/xpra" && len(c.SessionArgs) == 2 &&
				len(c.SessionProperties) == 2 && c.SessionDisplays == "200-209" && c.SessionStartTimeout.Duration == 20*time.Second &&
				slices.Equal(c.SessionOverrides, []string{"dpi"}) && c.SessionLeader == "/opt/leader" && c.MaxSessionsPerUser == 0
		}, ""},
		{"flags over the file", "start-session = \"auto\"\nmax-sessions-per-user = 2\n",
			[]string{"--start-session=never", "--max-sessions-per-user=0", "--session-arg=--start=xclock", "--session-property=TasksMax=100"},
			func(c SessionConfig) bool {
				return c.StartSession == StartNever && c.MaxSessionsPerUser == 0 && c.SessionArgs[0] == "--start=xclock" &&
					c.SessionProperties[0] == "TasksMax=100"
			}, ""},
		{"the reference's yes", "start-session = \"yes\"\n", nil, func(c SessionConfig) bool { return c.StartSession == StartAuto }, ""},
		{"bad mode", "start-session = \"sometimes\"\n", nil, nil, "use never, on-request or auto"},
		{"bad range", "session-displays = \"9-3\"\n", nil, nil, "want N-M"},
		{"relative command", "session-command = [\"xpra\"]\n", nil, nil, "absolute path"},
		{"unknown property", "session-properties = [\"ExecStartPre=/bin/sh\"]\n", nil, nil, "session-properties"},
		{"the proxy's own option", "session-overrides = [\"daemon\"]\n", nil, nil, "the proxy's to set"},
		{"not an option", "session-overrides = [\"--bind\"]\n", nil, nil, "not an option name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--worker=" + worker}, tc.args...)
			if tc.toml != "" {
				os.WriteFile(file, []byte(tc.toml), 0o600)
				args = append(args, "--config="+file)
			}
			c, err := ParseFlags(args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c.SessionConfig) {
				t.Fatalf("%+v %v", c.SessionConfig, err)
			}
		})
	}
}

func TestStartMode(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"", "start", ""}, {"start", "start", ""}, {"seamless", "start", ""},
		{"start-desktop", "start-desktop", ""}, {"desktop", "start-desktop", ""},
		{"shadow", "", "cannot start sessions of mode \"shadow\""},
		{"start-monitor", "", "cannot start"},
	} {
		got, err := startMode(tc.in)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("startMode(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestStartOptions(t *testing.T) {
	st := testStarter(t, nil)
	long := strings.Repeat("x", maxStartValueLength+1)
	tests := []struct {
		name        string
		in          map[string][]string
		want        map[string][]string
		wantIgnored []string
		wantErr     string
	}{
		{"allowed", map[string][]string{"start": {"xterm", "xclock"}, "dpi": {"96"}, "chdir": {"/home/u"}},
			map[string][]string{"start": {"xterm", "xclock"}, "dpi": {"96"}, "chdir": {"/home/u"}}, nil, ""},
		{"auth, binds and env are left out", map[string][]string{"tcp-auth": {"none"}, "bind-tcp": {"0.0.0.0:1"}, "env": {"LD_PRELOAD=/x"}, "title": {"t"}},
			map[string][]string{"title": {"t"}}, []string{"bind-tcp", "env", "tcp-auth"}, ""},
		{"control characters", map[string][]string{"start": {"xterm\n--bind-tcp=0.0.0.0:1"}}, nil, nil, "control characters"},
		{"too long", map[string][]string{"title": {long}}, nil, nil, "over 4096 bytes"},
		{"bad name", map[string][]string{"--daemon": {"yes"}}, nil, nil, "invalid start option name"},
		{"no value", map[string][]string{"dpi": {}}, nil, nil, "1 to 32 values"},
		{"bad UTF-8", map[string][]string{"title": {"\xff"}}, nil, nil, "control characters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ignored, err := st.options(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) || !slices.Equal(ignored, tc.wantIgnored) {
				t.Fatalf("got %v ignored %v err %v; want %v ignored %v", got, ignored, err, tc.want, tc.wantIgnored)
			}
		})
	}
}

func TestSessionCommand(t *testing.T) {
	st := testStarter(t, func(c *SessionConfig) {
		c.SessionCommand = []string{"/usr/bin/xpra", "--no-daemon-hint"}
		c.SessionArgs = []string{"--start=xterm", "--mdns=no"}
	})
	got := st.command("start-desktop", ":123", map[string][]string{"start": {"xclock -digital"}, "compression_level": {"3"}, "dpi": {"96"}})
	want := []string{"/usr/bin/xpra", "--no-daemon-hint", "start-desktop", ":123", "--start=xterm", "--mdns=no",
		"--compress=3", "--dpi=96", "--start=xclock -digital", "--daemon=no", "--systemd-run=no", "--start-via-proxy=no"}
	if !slices.Equal(got, want) {
		t.Fatalf("command\n got %q\nwant %q", got, want)
	}
}

func TestReserveDisplay(t *testing.T) {
	st := testStarter(t, func(c *SessionConfig) { c.SessionDisplays = "100-103" })
	steps := []struct {
		want    int
		busy    []int
		got     int
		wantErr string
	}{
		{0, nil, 100, ""},
		{0, []int{101}, 102, ""}, // 100 reserved, 101 has an X server
		{101, []int{101}, 0, "display :101 is already active"},
		{103, nil, 103, ""},
		{0, []int{101}, 0, "no free display in :100 to :103"},
	}
	for i, s := range steps {
		n, err := st.reserve(s.want, s.busy, 1000)
		if n != s.got || (s.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), s.wantErr)) {
			t.Fatalf("step %d: reserve(%d, %v) = %d, %v; want %d, %q", i, s.want, s.busy, n, err, s.got, s.wantErr)
		}
	}
	st.release(102)
	if n, err := st.reserve(0, []int{101}, 1000); n != 102 || err != nil {
		t.Fatalf("after release: %d, %v", n, err)
	}
	// A reservation lasts until the X server could have started.
	st.mu.Lock()
	st.reserved[100] = reservation{until: time.Now().Add(-time.Second)}
	st.mu.Unlock()
	if n, err := st.reserve(0, []int{101}, 1000); n != 100 || err != nil {
		t.Fatalf("after expiry: %d, %v", n, err)
	}
}

// xDisplays sees a real X-style listener on the abstract socket, as an
// Xvfb in another mount namespace would have.
func TestLockedDisplays(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{".X100-lock", ".X7-lock", ".X-lock", ".Xbad-lock", ".X12", "X13-lock", ".X11-unix", ".X-1-lock"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := lockedDisplays(dir)
	slices.Sort(got)
	if want := []int{7, 100}; !slices.Equal(got, want) {
		t.Fatalf("lockedDisplays = %v, want %v", got, want)
	}
	if got := lockedDisplays(filepath.Join(dir, "missing")); got != nil {
		t.Fatalf("lockedDisplays of a missing directory = %v", got)
	}
}

func TestXDisplays(t *testing.T) {
	n := 60000 + os.Getpid()%5000
	l, err := net.Listen("unix", fmt.Sprintf("@/tmp/.X11-unix/X%d", n))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := xDisplays()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, n) {
		t.Fatalf("xDisplays() = %v, want %d among them", got, n)
	}
	table := "Num       RefCount Protocol Flags    Type St Inode Path\n" +
		"0000000000000000: 00000002 00000000 00010000 0001 01 1234 /tmp/.X11-unix/X7\n" +
		"0000000000000000: 00000002 00000000 00010000 0001 01 1235 @/tmp/.X11-unix/X7\n" +
		"0000000000000000: 00000002 00000000 00010000 0001 01 1236 @/tmp/.X11-unix/X12\n" +
		"0000000000000000: 00000002 00000000 00010000 0001 01 1237 /run/user/1000/xpra/host-7\n" +
		"0000000000000000: 00000002 00000000 00010000 0001 01 1238 /tmp/.X11-unix/Xbad\n" +
		"0000000000000000: 00000003 00000000 00000000 0001 03 1239\n"
	if got, _ := parseXSockets(strings.NewReader(table)); !slices.Equal(got, []int{7, 12}) {
		t.Fatalf("parseXSockets = %v, want [7 12]", got)
	}
}

// serve answers only the relay it was made for, once, and refuses what
// the allowlist and the display range do not allow before asking systemd.
func TestServeSessionChannel(t *testing.T) {
	st := testStarter(t, func(c *SessionConfig) { c.SessionDisplays = "100-109" })
	ask := func(t *testing.T, o startOwner, msgs ...ipc.Message) []ipc.Message {
		t.Helper()
		sup, childFile, err := ipc.Pair()
		if err != nil {
			t.Fatal(err)
		}
		child, err := ipc.FromFile(childFile)
		childFile.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer child.Close()
		done := make(chan struct{})
		go func() { st.serve(sup, o); close(done) }()
		var replies []ipc.Message
		child.SetDeadline(time.Now().Add(10 * time.Second))
		for _, m := range msgs {
			if err := child.Send(m, nil); err != nil {
				t.Fatal(err)
			}
			r, _, _, err := child.Recv()
			if err != nil {
				replies = append(replies, ipc.Message{Kind: "closed"})
				break
			}
			replies = append(replies, r)
		}
		child.Close()
		<-done
		return replies
	}
	me := startOwner{pid: os.Getpid(), uid: uint32(os.Getuid()), user: "someone"}
	t.Run("refusals", func(t *testing.T) {
		counted := me
		counted.stats = stats.New(time.Now())
		r := ask(t, counted, ipc.Message{Kind: ipc.StartSession, Mode: "shadow"}, ipc.Message{Kind: ipc.StartSession})
		// One start was tried, and failed; the second was never tried.
		if got := counted.stats.Snapshot(stats.Gauges{}).Sessions; len(got) != 1 || got[0].Labels[0] != stats.Failed || got[0].Value != 1 {
			t.Errorf("sessions counted: %v, want one failed", got)
		}
		if len(r) != 2 || r[0].Kind != ipc.Denied || r[0].Reason != "server error" ||
			!slices.Equal(r[0].Details, []string{"failed to start a new session", `cannot start sessions of mode "shadow" (start, start-desktop)`}) {
			t.Fatalf("shadow: %+v", r)
		}
		if r[1].Kind != ipc.Denied || r[1].Details[1] != "one session per connection" {
			t.Fatalf("second request: %+v", r[1])
		}
	})
	t.Run("display out of range", func(t *testing.T) {
		r := ask(t, me, ipc.Message{Kind: ipc.StartSession, Display: ":5"})
		if len(r) != 1 || r[0].Kind != ipc.Denied || !strings.Contains(r[0].Details[1], "display :5 is not one the proxy starts sessions on (:100 to :109)") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("bad option value", func(t *testing.T) {
		r := ask(t, me, ipc.Message{Kind: ipc.StartSession, Options: map[string][]string{"start": {"a\x00b"}}})
		if len(r) != 1 || r[0].Kind != ipc.Denied || !strings.Contains(r[0].Details[1], "control characters") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("stop without a start", func(t *testing.T) {
		r := ask(t, me, ipc.Message{Kind: ipc.StopSession})
		if len(r) != 1 || r[0].Kind != ipc.SessionStopped {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("another process", func(t *testing.T) {
		other := me
		other.pid++
		r := ask(t, other, ipc.Message{Kind: ipc.StartSession})
		if len(r) != 1 || r[0].Kind != "closed" {
			t.Fatalf("a request from another pid got %+v", r)
		}
	})
}

// TestReservationPrune: a started session that logind no longer lists
// gives its display back at once (not after the start timeout), and the
// starts under way count toward their user's sessions.
func TestReservationPrune(t *testing.T) {
	st := testStarter(t, func(c *SessionConfig) { c.SessionDisplays = "100-101" })
	a, err := st.reserve(0, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.reserve(0, nil, 1001)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.reserve(0, nil, 1000); err == nil {
		t.Fatal("a third display out of two")
	}
	if n := st.prune(map[string]bool{}, 1000); n != 1 {
		t.Fatalf("uid 1000 has %d starts under way, want 1", n)
	}
	st.started(a, "c7")
	st.started(b, "c8")
	// c7 is still there, c8 died at once.
	if n := st.prune(map[string]bool{"c7": true}, 1000); n != 0 {
		t.Fatalf("uid 1000 has %d starts under way after its start, want 0", n)
	}
	n, err := st.reserve(0, nil, 1002)
	if err != nil || n != b {
		t.Fatalf("after c8 died: reserve = %d, %v; want :%d back", n, err, b)
	}
	if _, err := st.reserve(a, nil, 1002); err == nil {
		t.Fatalf("display :%d of a live session reserved again", a)
	}
}
