// SPDX-License-Identifier: GPL-2.0-or-later

package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/encode/server"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/stats"
)

// encoder serves the real encoder server on a unix socket until the test
// ends, admitting uid for frames and statsUID for stats alone.
func encoder(t *testing.T, allow, statsOnly func(uint32) bool) string {
	t.Helper()
	p := pool.Open(nil, pool.Config{}, quiet)
	t.Cleanup(p.Close)
	srv := server.New(server.Config{AllowUID: allow, StatsUID: statsOnly}, p, quiet)
	path := filepath.Join(t.TempDir(), "socket")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

func yes(uint32) bool { return true }
func no(uint32) bool  { return false }

// jpegFrames encodes n real frames through the encoder at path, in a
// context of their own kept open until the test ends.
func jpegFrames(t *testing.T, path string, n int) {
	t.Helper()
	c := client.New(path, client.Options{ServerUID: os.Getuid(), Log: quiet})
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	x, err := c.Open(encproto.Open{Codec: codec.JPEG, Format: codec.BGRX, Width: 32, Height: 32, Quality: 80})
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.NewFrame(32 * 4 * 32)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range n {
		if _, _, err := x.AppendCompress(nil, f, 0, 32*4, client.FrameOptions{Quality: -1, Speed: -1}); err != nil {
			t.Fatal(err)
		}
	}
}

const encHelp = `
# HELP xpra_proxy_encoder_frames_total Frames the shared encoder was given, by backend (x264, nvenc, jpeg; none: no such context) and result (ok, failed: the backend failed, rejected: a bad frame or no such context).
# TYPE xpra_proxy_encoder_frames_total counter
`

// A scrape asks the real encoder server, as a peer admitted for stats
// only, and shows the frames it encoded; the scrape passes promtool.
func TestEncoderMetrics(t *testing.T) {
	path := encoder(t, yes, no)
	jpegFrames(t, path, 3)
	// Frames from this uid, stats from the same: admitted for both here;
	// TestEncoderStatsOnly has the metrics uid apart.
	asker := &EncoderAsker{Path: path, UID: os.Getuid(), MinInterval: time.Second}
	c := NewCollector(fixed(sample(), stats.Gauges{}), asker.Stats, quiet)
	want := encHelp
	for _, b := range frameBackends {
		for _, r := range frameResults {
			v := "0"
			if b == "jpeg" && r == "ok" {
				v = "3"
			}
			want += `xpra_proxy_encoder_frames_total{backend="` + b + `",result="` + r + `"} ` + v + "\n"
		}
	}
	want += `
# HELP xpra_proxy_encoder_up 1 when the shared encoder (encoder-socket) answered this scrape, 0 when not. Absent, with every xpra_proxy_encoder_ family, when encoder-socket is unset.
# TYPE xpra_proxy_encoder_up gauge
xpra_proxy_encoder_up 1
# HELP xpra_proxy_encoder_queue Frames in the shared encoder now: received and not yet encoded.
# TYPE xpra_proxy_encoder_queue gauge
xpra_proxy_encoder_queue 0
# HELP xpra_proxy_encoder_contexts Encoding contexts (one per window being encoded) open in the shared encoder now.
# TYPE xpra_proxy_encoder_contexts gauge
xpra_proxy_encoder_contexts 1
# HELP xpra_proxy_up 1 when the supervisor answered this scrape; 0 and nothing else when it did not.
# TYPE xpra_proxy_up gauge
xpra_proxy_up 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "xpra_proxy_encoder_frames_total",
		"xpra_proxy_encoder_up", "xpra_proxy_encoder_queue", "xpra_proxy_encoder_contexts", "xpra_proxy_up"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(registryWith(fixed(sample(), stats.Gauges{}), asker.Stats)); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	srv := &http.Server{Handler: Handler(fixed(sample(), stats.Gauges{}), asker.Stats, quiet)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	asker.MinInterval = 0 // the frames below show at once
	jpegFrames(t, path, 1)
	body := get(t, "http://"+l.Addr().String()+"/metrics")
	if !strings.Contains(body, `xpra_proxy_encoder_frames_total{backend="jpeg",result="ok"} 4`+"\n") {
		t.Errorf("the scrape lacks the 4 frames:\n%s", body)
	}
	promtool := testenv.Command(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n%s", err, out, body)
	}
}

// The metrics process's uid, in --stats-users only, is answered; the
// encoder not there, or served by another uid than the encoder's, is
// encoder_up 0 with the supervisor's families as they were; no
// encoder-socket, no encoder families.
func TestEncoderStatsOnly(t *testing.T) {
	statsOnly := encoder(t, no, yes)
	tests := []struct {
		name string
		enc  EncoderSource
		up   string // "": no encoder families
	}{
		{"stats only", (&EncoderAsker{Path: statsOnly, UID: os.Getuid()}).Stats, "1"},
		{"not admitted", (&EncoderAsker{Path: encoder(t, no, no), UID: os.Getuid()}).Stats, "0"},
		{"no encoder", (&EncoderAsker{Path: filepath.Join(t.TempDir(), "none"), UID: os.Getuid()}).Stats, "0"},
		{"another uid", (&EncoderAsker{Path: statsOnly, UID: os.Getuid() + 1}).Stats, "0"},
		{"user unknown", (&EncoderAsker{Path: statsOnly, UID: -1}).Stats, "0"},
		{"unset", nil, ""},
	}
	for _, tt := range tests {
		c := NewCollector(fixed(sample(), stats.Gauges{}), tt.enc, quiet)
		n := testutil.CollectAndCount(c, "xpra_proxy_encoder_up")
		switch {
		case tt.up == "" && n != 0:
			t.Errorf("%s: %d encoder_up", tt.name, n)
		case tt.up != "":
			err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP xpra_proxy_encoder_up 1 when the shared encoder (encoder-socket) answered this scrape, 0 when not. Absent, with every xpra_proxy_encoder_ family, when encoder-socket is unset.
# TYPE xpra_proxy_encoder_up gauge
xpra_proxy_encoder_up `+tt.up+"\n"), "xpra_proxy_encoder_up")
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
		}
		if n := testutil.CollectAndCount(c, "xpra_proxy_relayed_bytes_total"); n != 2 {
			t.Errorf("%s: %d relayed bytes series, want the supervisor's 2", tt.name, n)
		}
		if tt.up != "1" && testutil.CollectAndCount(c, "xpra_proxy_encoder_frames_total") != 0 {
			t.Errorf("%s: frames without an answer", tt.name)
		}
	}
}

// However often it is scraped, the encoder is asked at most once per
// MinInterval: an answer, or a failure, is reused until then.
func TestEncoderAskerInterval(t *testing.T) {
	path := encoder(t, yes, no)
	a := &EncoderAsker{Path: path, UID: os.Getuid(), MinInterval: time.Hour}
	first, err := a.Stats()
	if err != nil {
		t.Fatal(err)
	}
	jpegFrames(t, path, 1)
	again, err := a.Stats()
	if err != nil || again != first {
		t.Errorf("within the interval: %+v %v, want the first answer %+v", again, err, first)
	}
	a.MinInterval = 0
	if now, err := a.Stats(); err != nil || now.Frames[encproto.JPEG][encproto.FrameOK] != 1 {
		t.Errorf("after it: %+v %v", now, err)
	}
}

// FuzzEncoderReply: whatever the encoder's socket answers, AskStats
// reads at most its budget and never panics, and what it accepts is
// collected without a panic (client_golang's Must* constructors panic on
// a bad value).
func FuzzEncoderReply(f *testing.F) {
	good, typ, _ := encproto.AppendReply(nil, encproto.StatsReply{Start: 1, Conns: 2, Frames: [4][3]uint64{{1, 2, 3}, {^uint64(0)}}})
	f.Add(append(encproto.AppendHeader(nil, encproto.Header{Type: typ, Seq: 1, Len: uint32(len(good))}), good...))
	e, typ, _ := encproto.AppendReply(nil, &encproto.Error{Code: encproto.Refused, Message: "no"})
	f.Add(append(encproto.AppendHeader(nil, encproto.Header{Type: typ, Seq: 1, Len: uint32(len(e))}), e...))
	f.Add(encproto.AppendHeader(nil, encproto.Header{Type: encproto.TStatsReply, Seq: 1, Len: 1 << 26}))
	f.Add(encproto.AppendHeader(nil, encproto.Header{Type: encproto.TCompressed, Seq: 1, Len: 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
		nc, err := net.FileConn(ours)
		ours.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		go func() {
			defer theirs.Close()
			var req [encproto.HeaderSize]byte
			if _, err := theirs.Read(req[:]); err == nil {
				theirs.Write(data)
			}
		}()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		st, err := AskStats(nc.(*net.UnixConn))
		if err != nil {
			return
		}
		c := NewCollector(fixed(sample(), stats.Gauges{}), func() (encproto.StatsReply, error) { return st, nil }, quiet)
		ch := make(chan prometheus.Metric, 1024)
		go func() {
			defer close(ch)
			c.Collect(ch)
		}()
		for range ch {
		}
	})
}

func registryWith(src Source, enc EncoderSource) *prometheus.Registry {
	r := prometheus.NewPedanticRegistry()
	r.MustRegister(NewCollector(src, enc, quiet))
	return r
}
