// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/internal/encodelab"
	"github.com/xpra-proxy/xpra-proxy/internal/logscan"
	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
)

// scrape GETs a metrics endpoint.
func scrape(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %d %v\n%s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

// missing are the lines of want that body lacks (whole lines).
func missing(body string, want []string) []string {
	var out []string
	for _, w := range want {
		if !strings.Contains("\n"+body, "\n"+w+"\n") {
			out = append(out, w)
		}
	}
	return out
}

// sample is the value of the sample line that starts with series (name
// and labels as the text format writes them), ok false when none does.
func sample(body, series string) (float64, bool) {
	for line := range strings.Lines(body) {
		if v, found := strings.CutPrefix(strings.TrimSuffix(line, "\n"), series+" "); found {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestMetrics: with metrics-bind, a real login that relays, a wrong
// password, and the penalty it brings show in the scrape of the metrics
// process (the control user, sandboxed, never root) with the counts they
// caused, and the scrape passes `promtool check metrics`.
func TestMetrics(t *testing.T) {
	xpralab.Require(t)
	srv := xpralab.StartAll(t, xpralab.Options{Args: []string{"--session-name=metrics"}})[0]
	mport := xpralab.FreePort(t)
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--per-source-penalty=20s",
		fmt.Sprintf("--metrics-bind=127.0.0.1:%d", mport))
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)

	// The metrics process: the control user's, without privileges, under
	// a seccomp filter of its own on top of what it inherited.
	ctl, err := user.Lookup(proxylab.ControlUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(ctl.Uid)
	gid, _ := strconv.Atoi(ctl.Gid)
	var mp proclab.Proc
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ps := childrenIn(p.Pid(), "--metrics"); len(ps) == 1 && proclab.Sandboxed(ps[0], proclab.Read(p.Pid())) {
			mp = ps[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sandboxed metrics process under supervisor %d:\n%s", p.Pid(), p.Logs())
		}
	}
	proclab.CheckConfined(t, mp, uid, gid, nil)
	if mp.Status["NSpgid"] == strconv.Itoa(p.Pid()) {
		t.Errorf("the metrics process is in the supervisor's process group")
	}

	first := scrape(t, url)
	if m := missing(first, []string{"xpra_proxy_up 1", "xpra_proxy_relays 0", "xpra_proxy_penalties_total 0"}); m != nil {
		t.Errorf("first scrape lacks %q:\n%s", m, first)
	}
	if strings.Contains(first, "xpra_proxy_logins_total{") {
		t.Errorf("logins counted before any:\n%s", first)
	}
	if strings.Contains(first, "xpra_proxy_encoder_") {
		t.Errorf("encoder families without encoder-socket:\n%s", first)
	}

	// A login that relays, kept attached (a live relay).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	from := func(ip string) *net.TCPAddr { return &net.TCPAddr{IP: net.ParseIP(ip)} }
	res, nc, err := probe.Open(ctx, probe.Options{URL: p.URL(srv.User.Username+":secret", srv.Display),
		Request: probe.Connect, LocalAddr: from("127.0.0.1"), Timeout: 30 * time.Second})
	if err != nil || res == nil {
		t.Fatalf("login: %v", err)
	}
	defer nc.Close()
	// A wrong password from another address, which that address pays for
	// with a penalty: its next connection is refused at the accept.
	guesser := from("127.0.0.3")
	if _, err := run(t, probe.Options{URL: p.URL(srv.User.Username+":wrong", srv.Display), Request: probe.Connect, LocalAddr: guesser}); refusal(err) != "authentication failed" {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := run(t, probe.Options{URL: p.URL(srv.User.Username+":secret", srv.Display), Request: probe.Connect, LocalAddr: guesser}); err == nil {
		t.Fatal("a penalized source logged in")
	}

	want := []string{
		"xpra_proxy_up 1",
		`xpra_proxy_connections_total{result="relayed",transport="tcp"} 1`,
		`xpra_proxy_connections_total{result="denied",transport="tcp"} 1`,
		`xpra_proxy_connections_total{result="refused-penalty",transport="tcp"} 1`,
		`xpra_proxy_logins_total{module="password",result="ok",transport="tcp"} 1`,
		`xpra_proxy_logins_total{module="password",result="failed",transport="tcp"} 1`,
		"xpra_proxy_penalties_total 1",
		"xpra_proxy_penalized_sources 1",
		"xpra_proxy_relays 1",
		// Counted when a relay ends: this one lives.
		`xpra_proxy_relayed_bytes_total{direction="from_client"} 0`,
		`xpra_proxy_relayed_bytes_total{direction="from_server"} 0`,
		"xpra_proxy_setup_duration_seconds_count 1",
		`xpra_proxy_setup_duration_seconds_bucket{le="+Inf"} 1`,
	}
	// The counts are taken as each exchange ends, and a snapshot is at
	// most a second old.
	var body string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		body = scrape(t, url)
		m := missing(body, want)
		if m == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scrape lacks %q:\n%s", m, body)
		}
	}
	t.Logf("scrape:\n%s", body)

	promtool := testenv.Command(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	// Figures for BENCHMARKS.md, not assertions: what a scrape costs (one
	// ipc round trip to root at most a second, the rest in the metrics
	// process) and what the process holds.
	var took []time.Duration
	for range 20 {
		t0 := time.Now()
		scrape(t, url)
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	t.Logf("20 scrapes: median %v, max %v; metrics process VmRSS %s, Threads %s", took[10], took[19],
		proclab.Read(mp.PID).Status["VmRSS"], proclab.Read(mp.PID).Status["Threads"])

	// Bytes after the hellos (which the worker reads itself, uncounted):
	// a ping through the relay and the server's echo.
	pc := conn.New(nc)
	if err := pc.WritePacket(conn.Packet{packet.Ping, time.Now().UnixMilli()}); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := nc.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		pk, err := pc.ReadPacket()
		if err != nil {
			t.Fatalf("waiting for the ping's echo: %v", err)
		}
		if len(pk) > 0 && pk[0] == packet.PingEcho {
			break
		}
	}
	// The client leaves: its relay ends, the gauge follows, and the bytes
	// it moved are counted.
	nc.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		body = scrape(t, url)
		fromClient, _ := sample(body, `xpra_proxy_relayed_bytes_total{direction="from_client"}`)
		fromServer, _ := sample(body, `xpra_proxy_relayed_bytes_total{direction="from_server"}`)
		if missing(body, []string{"xpra_proxy_relays 0"}) == nil && fromClient > 0 && fromServer > 0 {
			t.Logf("the ended relay moved %v bytes from the client, %v from the server", fromClient, fromServer)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay's end or its bytes not seen:\n%s", body)
		}
	}
	cmd = exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics after the relay's end: %v\n%s", err, out)
	}
}

// TestMetricsSocketActivation: as xpra-proxy-metrics.socket does, systemd
// passes a socket named metrics beside the proxy's: the supervisor gives
// it to the metrics process, not to its accept loop.
func TestMetricsSocketActivation(t *testing.T) {
	testenv.Root(t)
	activate := testenv.Command(t, "systemd-socket-activate")
	bin := proxylab.Build(t)
	proxylab.EnsurePreauthUser(t)
	addr := fmt.Sprintf("127.0.0.1:%d", xpralab.FreePort(t))
	maddr := fmt.Sprintf("127.0.0.1:%d", xpralab.FreePort(t))
	cmd := exec.Command(activate, "-l", addr, "-l", maddr, "--fdname=tcp:metrics", filepath.Join(bin, "xpra-proxy"),
		"--tcp-auth=none", "--control-socket=off", "--run-dir="+filepath.Join(t.TempDir(), "run"))
	out := &proxylab.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// systemd-socket-activate execs the supervisor on the first
	// connection to either socket: a scrape starts it.
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c := http.Client{Timeout: 10 * time.Second}
		if resp, err := c.Get("http://" + maddr + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); resp.StatusCode == http.StatusOK && missing(body, []string{"xpra_proxy_up 1"}) == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics on the activated socket (last: %q):\n%s", body, out)
		}
	}
	res, err := probe.Run(t.Context(), probe.Options{URL: "tcp://" + addr + "/", Request: "version", Timeout: 20 * time.Second})
	if err != nil || res.ReplyCaps().Str("version", "") != "3.1.3" {
		t.Fatalf("version through the activated proxy socket: %v\n%s", err, out)
	}
	if strings.Contains(out.String(), "listening type=metrics") || !strings.Contains(out.String(), `msg="serving metrics" addr=`+maddr) {
		t.Errorf("the metrics socket was not handed to the metrics process alone:\n%s", out)
	}
	for _, line := range logscan.Bad(out.String()) {
		t.Errorf("our processes logged a crash or a bad end:\n%s", line)
	}
}

// TestMetricsEncoder: with encoder-socket set, the metrics process (the
// control user, admitted by the real encoder binary for stats only with
// --stats-users) asks the shared encoder for its counters: real frames
// encoded through it (x264 and JPEG, from a client as the relays are
// one) show in the scrape by backend, with its connections and contexts,
// and the scrape passes promtool; the encoder killed, encoder_up is 0
// and the supervisor's families stay.
func TestMetricsEncoder(t *testing.T) {
	testenv.Root(t)
	proxylab.EnsurePreauthUser(t) // the control user, before the encoder resolves it
	enc := encodelab.Start(t, "--allow-uids=0", "--stats-users="+proxylab.ControlUser)
	mport := xpralab.FreePort(t)
	p := proxylab.Start(t, "--tcp-auth=none", "--encoder-socket="+enc.Socket,
		fmt.Sprintf("--metrics-bind=127.0.0.1:%d", mport))
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	// waitFor scrapes until every line of want is there.
	waitFor := func(what string, want []string) string {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			body := scrape(t, url)
			if missing(body, want) == nil {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the scrape lacks %q:\n%s\nproxy:\n%s\nencoder:\n%s", what, missing(body, want), body, p.Logs(), enc.Logs())
			}
		}
	}
	waitFor("before any frame", []string{"xpra_proxy_up 1", "xpra_proxy_encoder_up 1",
		`xpra_proxy_encoder_frames_total{backend="x264",result="ok"} 0`, "xpra_proxy_encoder_contexts 0"})

	c := client.New(enc.Socket, client.Options{ServerUID: enc.UID})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("connecting to the encoder: %v\n%s", err, enc.Logs())
	}
	const W, H = 320, 240
	frame, err := client.NewFrame(W * 4 * H)
	if err != nil {
		t.Fatal(err)
	}
	defer frame.Close()
	for i := range frame.Bytes() {
		frame.Bytes()[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		c      codec.Codec
		frames int
	}{{codec.H264, 5}, {codec.JPEG, 2}} {
		x, err := c.Open(encproto.Open{Codec: tc.c, Format: codec.BGRX, Width: W, Height: H, Quality: 80, Speed: 50})
		if err != nil {
			t.Fatalf("%v context: %v", tc.c, err)
		}
		for range tc.frames {
			if _, _, err := x.AppendCompress(nil, frame, 0, W*4, client.FrameOptions{Quality: -1, Speed: -1}); err != nil {
				t.Fatalf("%v frame: %v", tc.c, err)
			}
		}
	}
	// This machine has no NVENC: H.264 is x264's.
	body := waitFor("after 5 H.264 and 2 JPEG frames", []string{"xpra_proxy_encoder_up 1",
		`xpra_proxy_encoder_frames_total{backend="x264",result="ok"} 5`,
		`xpra_proxy_encoder_frames_total{backend="jpeg",result="ok"} 2`,
		`xpra_proxy_encoder_frames_total{backend="x264",result="failed"} 0`,
		"xpra_proxy_encoder_contexts 2", "xpra_proxy_encoder_queue 0"})
	if v, ok := sample(body, "xpra_proxy_encoder_sessions"); !ok || v < 1 {
		t.Errorf("encoder sessions %v (%v), want our client at least", v, ok)
	}
	t.Logf("scrape:\n%s", body)
	promtool := testenv.Command(t, "promtool")
	check := func(body string) {
		t.Helper()
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
	check(body)

	// The encoder goes away: its families say so, the supervisor's stay.
	enc.Kill()
	body = waitFor("the encoder killed", []string{"xpra_proxy_encoder_up 0", "xpra_proxy_up 1"})
	if strings.Contains(body, "xpra_proxy_encoder_frames_total{") {
		t.Errorf("frames of an encoder that did not answer:\n%s", body)
	}
	check(body)
}
