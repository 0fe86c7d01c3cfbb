// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/stats"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// metricsDouble is the metrics process of these tests: for each
// connection on its socket it asks the supervisor once and writes the
// MetricsReply's document back, so the test reads what root sent.
func metricsDouble() int {
	fds, err := child.Metrics.Take()
	if err != nil {
		return doubleFail(nil, "take: %v", err)
	}
	l, err := net.FileListener(fds["metrics"])
	if err != nil {
		return doubleFail(nil, "listener: %v", err)
	}
	sup, err := ipc.FromFile(fds["ipc"])
	if err != nil {
		return doubleFail(nil, "ipc: %v", err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return 0
		}
		if err := sup.Send(ipc.Message{Kind: ipc.Metrics}, nil); err != nil {
			return doubleFail(c, "ask: %v", err)
		}
		m, _, _, err := sup.Recv()
		if err != nil || m.Kind != ipc.MetricsReply {
			return doubleFail(c, "reply %q: %v", m.Kind, err)
		}
		fmt.Fprintf(c, "uid %d %s\n", os.Getuid(), m.Stats)
		c.Close()
	}
}

// TestMetricsCounts: logins that relay, fail and are refused by their
// penalty are counted by transport, module and result, and reach the
// metrics process (run as the control user) over its ipc pair.
func TestMetricsCounts(t *testing.T) {
	sv := serveDoubles(t, "--metrics-bind=127.0.0.1:0")
	ok, line := sv.login(t, "tcp", "nobody secret")
	report(t, line)
	if _, line := sv.login(t, "unix", "nobody wrong"); line != `denied: authentication failed []` {
		t.Fatalf("wrong password: %q", line)
	}
	if _, line := sv.login(t, "tcp", "nobody wrong"); line != `denied: authentication failed []` {
		t.Fatalf("wrong password: %q", line)
	}
	// 127.0.0.1 now serves a penalty (1 s): refused at the accept.
	refused, err := net.Dial("tcp", sv.tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	refused.Close()
	eventually(t, "the refusal counted", func() bool {
		for _, c := range sv.s.snapshot().Connections {
			if c.Labels[1] == "refused-penalty" {
				return true
			}
		}
		return false
	})
	eventually(t, "the unix denial counted", func() bool {
		return len(sv.s.snapshot().Logins) == 3
	})

	c, err := net.DialTimeout("tcp", sv.metricsAddr, 10*time.Second)
	if err != nil {
		t.Fatalf("%v; log: %q", err, sv.logs.all())
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	var uid int
	var js string
	if _, err := fmt.Sscanf(string(b), "uid %d %s", &uid, &js); err != nil {
		t.Fatalf("metrics double said %q: %v", b, err)
	}
	if uid != int(sv.s.control.Uid) || uid == 0 {
		t.Errorf("metrics process ran as uid %d, want the control user's %d", uid, sv.s.control.Uid)
	}
	var sn stats.Snapshot
	if err := json.Unmarshal([]byte(js), &sn); err != nil {
		t.Fatalf("snapshot %q: %v", js, err)
	}
	if err := sn.Check(); err != nil {
		t.Error(err)
	}
	wantConns := []stats.Count{
		{Labels: []string{"tcp", "denied"}, Value: 1},
		{Labels: []string{"tcp", "refused-penalty"}, Value: 1},
		{Labels: []string{"tcp", "relayed"}, Value: 1},
		{Labels: []string{"unix", "denied"}, Value: 1},
	}
	if !reflect.DeepEqual(sn.Connections, wantConns) {
		t.Errorf("connections %v, want %v", sn.Connections, wantConns)
	}
	wantLogins := []stats.Count{
		{Labels: []string{"tcp", "password", "failed"}, Value: 1},
		{Labels: []string{"tcp", "password", "ok"}, Value: 1},
		{Labels: []string{"unix", "password", "failed"}, Value: 1},
	}
	if !reflect.DeepEqual(sn.Logins, wantLogins) {
		t.Errorf("logins %v, want %v", sn.Logins, wantLogins)
	}
	// A unix peer has no address to penalize.
	if sn.Penalties != 1 || sn.Relays != 1 || sn.Setup.Count != 1 {
		t.Errorf("penalties %d (want 1), relays %d (want 1), setups %d (want 1)", sn.Penalties, sn.Relays, sn.Setup.Count)
	}
	if sn.BytesFromClient != 0 || sn.BytesFromServer != 0 {
		t.Errorf("bytes counted while the relay lives: %d, %d", sn.BytesFromClient, sn.BytesFromServer)
	}
	// The relay ends: its worker reports its bytes (the double: what it
	// read from the client, and its line to it), and they are counted.
	const sent = "some bytes from the client"
	if _, err := io.WriteString(ok, sent); err != nil {
		t.Fatal(err)
	}
	ok.Close()
	eventually(t, "the ended relay's bytes counted", func() bool {
		return sv.s.snapshot().BytesFromClient != 0
	})
	sn = sv.s.snapshot()
	if sn.BytesFromClient != uint64(len(sent)) || sn.BytesFromServer != uint64(len(line)+len("\n")) {
		t.Errorf("bytes from client %d (want %d), from server %d (want %d)", sn.BytesFromClient, len(sent), sn.BytesFromServer, len(line)+1)
	}
}

// TestCountExchange: how an exchange's end is told apart.
func TestCountExchange(t *testing.T) {
	file, err := auth.New(auth.Spec{Name: "reject"}, auth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		x          exchange
		conn       []string
		login      []string // nil: no login counted
		setupCount uint64
	}{
		{"version request", exchange{typ: "tcp"}, []string{"tcp", "closed"}, nil, 0},
		{"relayed", exchange{typ: "tcp", transport: "wss", username: "u", module: file, grantedBy: "file", accepted: 42},
			[]string{"wss", "relayed"}, []string{"wss", "file", "ok"}, 1},
		{"wrong password", exchange{typ: "unix", transport: "unix", username: "u", module: file, verdict: true, denied: "authentication failed"},
			[]string{"unix", "denied"}, []string{"unix", "reject", "failed"}, 0},
		{"bad user name", exchange{typ: "tcp", verdict: true, denied: "authentication failed"},
			[]string{"tcp", "denied"}, []string{"tcp", "none", "failed"}, 0},
		{"no session", exchange{typ: "tcp", transport: "tcp", username: "u", verdict: true, denied: "session not found error"},
			[]string{"tcp", "denied"}, []string{"tcp", "none", "failed"}, 0},
		{"too many relays", exchange{typ: "tcp", transport: "ssl", username: "u", module: file, verdict: true, denied: "too many connections"},
			[]string{"ssl", "denied"}, []string{"ssl", "reject", "error"}, 0},
		{"client left at the challenge", exchange{typ: "tcp", transport: "ws", username: "u", module: file},
			[]string{"ws", "closed"}, []string{"ws", "reject", "abandoned"}, 0},
	}
	for _, tt := range tests {
		s := &Supervisor{stats: stats.New(time.Now())}
		s.count(&tt.x, time.Now())
		sn := s.stats.Snapshot(stats.Gauges{})
		if len(sn.Connections) != 1 || !reflect.DeepEqual(sn.Connections[0].Labels, tt.conn) {
			t.Errorf("%s: connections %v, want %v", tt.name, sn.Connections, tt.conn)
		}
		switch {
		case tt.login == nil && len(sn.Logins) != 0:
			t.Errorf("%s: logins %v, want none", tt.name, sn.Logins)
		case tt.login != nil && (len(sn.Logins) != 1 || !reflect.DeepEqual(sn.Logins[0].Labels, tt.login)):
			t.Errorf("%s: logins %v, want %v", tt.name, sn.Logins, tt.login)
		}
		if sn.Setup.Count != tt.setupCount {
			t.Errorf("%s: %d setups observed, want %d", tt.name, sn.Setup.Count, tt.setupCount)
		}
	}
}

func TestRefusedResult(t *testing.T) {
	for reason, want := range map[string]string{
		limits.ReasonFull: "refused-full", limits.ReasonDrop: "refused-dropped", limits.ReasonPerSource: "refused-per-source",
		limits.ReasonPenalty: "refused-penalty", limits.ReasonRate: "refused-rate", limits.ReasonPerUID: "refused-per-uid",
		"something new": "refused-other",
	} {
		if got := refusedResult(fmt.Errorf("wrapped: %w", &limits.Refusal{Reason: reason})); got != want {
			t.Errorf("%q: %q, want %q", reason, got, want)
		}
	}
	if got := refusedResult(errors.New("not a refusal")); got != "refused-other" {
		t.Errorf("plain error: %q", got)
	}
}

func TestMetricsBindOption(t *testing.T) {
	for _, tt := range []struct {
		arg, want string
		ok        bool
	}{
		{"", "", true}, {"off", "", true}, {"127.0.0.1:9761", "127.0.0.1:9761", true}, {"[::1]:9761", "[::1]:9761", true},
		{"127.0.0.1", "", false}, {"9761", "", false}, {"host:", "", false},
	} {
		cfg, err := ParseFlags([]string{"--config=/dev/null", "--metrics-bind=" + tt.arg})
		if (err == nil) != tt.ok {
			t.Errorf("%q: %v", tt.arg, err)
			continue
		}
		if err == nil && cfg.MetricsBind != tt.want {
			t.Errorf("%q: %q, want %q", tt.arg, cfg.MetricsBind, tt.want)
		}
	}
}

// Listen binds metrics-bind as a listener of its own type, which Serve
// gives to the metrics process; it alone is not something to serve.
func TestListenMetrics(t *testing.T) {
	ls, err := Listen(Config{BindTCP: []string{"127.0.0.1:0"}, MetricsBind: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(ls)
	var types []string
	for _, l := range ls {
		types = append(types, l.Type)
	}
	if !reflect.DeepEqual(types, []string{MetricsType, "tcp"}) && !reflect.DeepEqual(types, []string{"tcp", MetricsType}) {
		t.Errorf("listener types %v", types)
	}
	if ls, err := Listen(Config{MetricsBind: "127.0.0.1:0"}); err == nil {
		closeAll(ls)
		t.Error("metrics-bind alone: no error")
	}
	if _, err := Listen(Config{BindTCP: []string{"127.0.0.1:0"}, MetricsBind: "192.0.2.1:1"}); err == nil {
		t.Error("an address not on this machine: no error")
	}
}

// A reload keeps metrics-bind: the metrics process holds the socket
// bound at start-up.
func TestMetricsBindNeedsRestart(t *testing.T) {
	old := Config{MetricsBind: "127.0.0.1:9761"}
	next := Config{MetricsBind: "127.0.0.1:9999"}
	if changed := keepRestartOnly(old, &next); !reflect.DeepEqual(changed, []string{"metrics-bind"}) || next.MetricsBind != old.MetricsBind {
		t.Errorf("changed %v, kept %q", changed, next.MetricsBind)
	}
}

// The metrics process learns the encoder's socket and uid from its
// arguments; without encoder-socket it gets none, and with an unknown
// encoder-user uid -1 (it then reports the encoder down).
func TestMetricsArgs(t *testing.T) {
	for _, tt := range []struct {
		socket, user string
		want         []string
	}{
		{"", "nobody", nil},
		{"/run/enc/socket", "nobody", []string{"--encoder-socket=/run/enc/socket", "--encoder-uid=65534"}},
		{"/run/enc/socket", "no-such-user-here", []string{"--encoder-socket=/run/enc/socket", "--encoder-uid=-1"}},
		{"/run/enc/socket", "root", []string{"--encoder-socket=/run/enc/socket", "--encoder-uid=-1"}},
	} {
		s := &Supervisor{log: slog.New(slog.DiscardHandler)}
		if got := s.metricsArgs(Config{EncoderSocket: tt.socket, EncoderUser: tt.user}); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q %q: %q, want %q", tt.socket, tt.user, got, tt.want)
		}
	}
}
