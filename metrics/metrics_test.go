// SPDX-License-Identifier: GPL-2.0-or-later

package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/stats"
)

var quiet = slog.New(slog.DiscardHandler)

// sample is a supervisor's counters after some traffic.
func sample() *stats.Stats {
	s := stats.New(time.Unix(1700000000, 0))
	s.Connection("tcp", stats.Relayed)
	s.Connection("ssl", stats.Denied)
	s.Connection("tcp", stats.RefusedPrefix+"penalty")
	s.Login("tcp", "file", stats.OK)
	s.Login("ssl", "file", stats.Failed)
	s.Login("ssl", "file", stats.Failed)
	s.Session(stats.OK)
	s.Setup(40 * time.Millisecond)
	s.RelayBytes(1200, 93530)
	return s
}

func fixed(s *stats.Stats, g stats.Gauges) Source {
	return func() (stats.Snapshot, error) { return s.Snapshot(g), nil }
}

func TestCollect(t *testing.T) {
	c := NewCollector(fixed(sample(), stats.Gauges{Relays: 1, Penalized: 1, Penalties: 2}), nil, quiet)
	want := `
# HELP xpra_proxy_logins_total Login attempts (a client's hello reached the supervisor), by transport, the auth module that judged (none: no module got that far) and result (ok, failed, error: authenticated but no relay, abandoned: gone before a verdict).
# TYPE xpra_proxy_logins_total counter
xpra_proxy_logins_total{module="file",result="failed",transport="ssl"} 2
xpra_proxy_logins_total{module="file",result="ok",transport="tcp"} 1
# HELP xpra_proxy_penalties_total Penalties imposed on a source address after a failed login.
# TYPE xpra_proxy_penalties_total counter
xpra_proxy_penalties_total 2
# HELP xpra_proxy_relayed_bytes_total Bytes relayed by relays that ended, by direction (from_client, from_server), as each worker reported at its end: a live relay's bytes show when it ends; a killed worker's are not counted.
# TYPE xpra_proxy_relayed_bytes_total counter
xpra_proxy_relayed_bytes_total{direction="from_client"} 1200
xpra_proxy_relayed_bytes_total{direction="from_server"} 93530
# HELP xpra_proxy_relays Relay workers alive now (attached clients), those adopted from an earlier supervisor included.
# TYPE xpra_proxy_relays gauge
xpra_proxy_relays 1
# HELP xpra_proxy_up 1 when the supervisor answered this scrape; 0 and nothing else when it did not.
# TYPE xpra_proxy_up gauge
xpra_proxy_up 1
# HELP xpra_proxy_connections_total Connections ended, by transport (tcp, ssl, ws, wss, unix; the listener's type when refused or silent) and result (relayed, denied, closed, refused-<limit>).
# TYPE xpra_proxy_connections_total counter
xpra_proxy_connections_total{result="denied",transport="ssl"} 1
xpra_proxy_connections_total{result="refused-penalty",transport="tcp"} 1
xpra_proxy_connections_total{result="relayed",transport="tcp"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "xpra_proxy_logins_total",
		"xpra_proxy_penalties_total", "xpra_proxy_relays", "xpra_proxy_up", "xpra_proxy_connections_total",
		"xpra_proxy_relayed_bytes_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "xpra_proxy_setup_duration_seconds"); n != 1 {
		t.Errorf("%d setup histograms", n)
	}
}

// The shared directory's families show only where there is a directory.
func TestCollectDirectory(t *testing.T) {
	const head = `
# HELP xpra_proxy_directory_up 1 when the shared directory (PostgreSQL, directory-uri-file) answered this proxy's last call, 0 while it is unreachable; absent without a directory.
# TYPE xpra_proxy_directory_up gauge
`
	const fbHead = `# HELP xpra_proxy_directory_fallback_logins_total Logins the postgresql module's fallback decided, whatever their result, because the shared directory was unreachable.
# TYPE xpra_proxy_directory_fallback_logins_total counter
`
	const heardHead = `# HELP xpra_proxy_directory_penalties_heard_total Penalties of sources learnt from other proxies through the shared directory that lengthened this proxy's (its own count in xpra_proxy_penalties_total).
# TYPE xpra_proxy_directory_penalties_heard_total counter
`
	tests := []struct {
		name string
		dir  *stats.Directory
		want string
	}{
		{"no directory", nil, ""},
		{"up", &stats.Directory{Up: true, PenaltiesHeard: 2}, head + "xpra_proxy_directory_up 1\n" + fbHead + "xpra_proxy_directory_fallback_logins_total 0\n" +
			heardHead + "xpra_proxy_directory_penalties_heard_total 2\n"},
		{"down", &stats.Directory{FallbackLogins: 3}, head + "xpra_proxy_directory_up 0\n" + fbHead + "xpra_proxy_directory_fallback_logins_total 3\n" +
			heardHead + "xpra_proxy_directory_penalties_heard_total 0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCollector(fixed(sample(), stats.Gauges{Directory: tt.dir}), nil, quiet)
			if err := testutil.CollectAndCompare(c, strings.NewReader(tt.want),
				"xpra_proxy_directory_up", "xpra_proxy_directory_fallback_logins_total", "xpra_proxy_directory_penalties_heard_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

// Without the supervisor's figures a scrape says up 0 and nothing else,
// also when what came is malformed.
func TestCollectDown(t *testing.T) {
	tests := []struct {
		name string
		src  Source
	}{
		{"no answer", func() (stats.Snapshot, error) { return stats.Snapshot{}, errors.New("gone") }},
		{"malformed", func() (stats.Snapshot, error) {
			sn := sample().Snapshot(stats.Gauges{})
			sn.Logins[0].Labels = []string{"tcp"}
			return sn, nil
		}},
	}
	for _, tt := range tests {
		c := NewCollector(tt.src, nil, quiet)
		if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP xpra_proxy_up 1 when the supervisor answered this scrape; 0 and nothing else when it did not.
# TYPE xpra_proxy_up gauge
xpra_proxy_up 0
`)); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// The pedantic registry checks every metric against its description;
// promtool (Debian's prometheus package) checks the text format itself.
func TestScrapeLints(t *testing.T) {
	srv := &http.Server{Handler: Handler(fixed(sample(), stats.Gauges{}), nil, quiet)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	body := get(t, "http://"+l.Addr().String()+"/metrics")
	for _, want := range []string{
		`xpra_proxy_setup_duration_seconds_bucket{le="0.05"} 1`,
		`xpra_proxy_setup_duration_seconds_count 1`,
		`xpra_proxy_sessions_started_total{result="ok"} 1`,
		`xpra_proxy_start_time_seconds 1.7e+09`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
	if problems, err := testutil.GatherAndLint(registry(fixed(sample(), stats.Gauges{}))); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	promtool := testenv.Command(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func registry(src Source) *prometheus.Registry {
	r := prometheus.NewPedanticRegistry()
	r.MustRegister(NewCollector(src, nil, quiet))
	return r
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// The Asker speaks the ipc pair as the supervisor's end expects, and
// asks at most once per MinInterval however often it is called.
func TestAsker(t *testing.T) {
	sup, childEnd, err := ipc.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	child, err := ipc.FromFile(childEnd)
	childEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	var asked atomic.Int32
	s := sample()
	go func() {
		for {
			m, _, _, err := sup.Recv()
			if err != nil {
				return
			}
			asked.Add(1)
			b, _ := json.Marshal(s.Snapshot(stats.Gauges{Relays: int64(asked.Load())}))
			if m.Kind != ipc.Metrics {
				b = nil
			}
			if sup.Send(ipc.Message{Kind: ipc.MetricsReply, Stats: b}, nil) != nil {
				return
			}
		}
	}()
	now := time.Unix(100, 0)
	a := &Asker{Conn: child, MinInterval: time.Second, now: func() time.Time { return now }}
	for i, tt := range []struct {
		advance time.Duration
		relays  int64
	}{{0, 1}, {500 * time.Millisecond, 1}, {499 * time.Millisecond, 1}, {time.Millisecond, 2}, {5 * time.Second, 3}} {
		now = now.Add(tt.advance)
		sn, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if sn.Relays != tt.relays {
			t.Errorf("step %d: relays %d, want %d (asked %d times)", i, sn.Relays, tt.relays, asked.Load())
		}
	}
	sup.Close()
	now = now.Add(time.Hour)
	if _, err := a.Snapshot(); !errors.Is(err, ipc.ErrClosed) {
		t.Errorf("after the supervisor left: %v", err)
	}
}

// Serve bounds requests: a header that never ends is cut off, and
// only /metrics and / are served.
func TestServe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, fixed(sample(), stats.Gauges{}), nil, quiet) }()
	base := "http://" + l.Addr().String()
	if body := get(t, base+"/"); !strings.Contains(body, "/metrics") {
		t.Errorf("/: %q", body)
	}
	resp, err := http.Post(base+"/metrics", "text/plain", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /other: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
