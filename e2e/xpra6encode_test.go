// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/encodelab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpra6lab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// h264Frames matches 6.x's per-window count of h264 frames sent to a
// client, in the server's `xpra info`.
var h264Frames = regexp.MustCompile(`^client\.\d+\.window\.\d+\.total_frames\.h264$`)

// remoteFrames is how many h264 frames the server's current client got,
// and whether a window of it is encoded by the remote encoder.
func remoteFrames(info map[string]string) (frames int, remote bool) {
	for k, v := range info {
		if h264Frames.MatchString(k) {
			n, _ := strconv.Atoi(v)
			frames += n
		}
		if strings.HasSuffix(k, ".encoder") && strings.Contains(k, ".window.") && v == "remote-x264" {
			remote = true
		}
	}
	return frames, remote
}

// TestRemoteEncoderXpra6: a real xpra 6.5.3 server started with
// --video-encoders=remote:uri=socket://… at the shared encoder's xpra
// socket (cmd/xpra-proxy-encode --xpra-socket) sends its animated window
// as h264 made by our encoder, to a real 6.5.3 client attached directly
// and then through the proxy. The frames are counted by the server's own
// `xpra info` (total_frames.h264, encoder remote-x264), the contexts by
// the encoder's log, and the draws the client acknowledged show it
// decoded them.
func TestRemoteEncoderXpra6(t *testing.T) {
	xpra6lab.Require(t)
	if why := xpra6lab.RemoteEncoderMissing(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skipf("skipped: %s", why)
	}
	enc := encodelab.Start(t, "--debug", "--threads=1")

	dir := xpralab.Dir(t)
	script := filepath.Join(dir, "anim.py")
	if err := os.WriteFile(script, []byte(animScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(dir, "ctl")
	if err := os.Mkdir(ctl, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := xpra6lab.Start(t, xpra6lab.Options{App: fmt.Sprintf("/usr/bin/python3 %s %s 320 240", script, ctl),
		Args: []string{"--video-encoders=remote:uri=socket://" + enc.XpraSocket}})
	// The server connects to the encoder at start-up; without the
	// patch (or with a refused uid) it says why and falls back to x264,
	// which this build does not have enabled.
	waitFor(t, 30*time.Second, "the 6.x server's connection to our encoder", func() bool {
		log, _ := os.ReadFile(srv.Log)
		return strings.Contains(string(log), "connected to encoder server")
	}, func() string { log, _ := os.ReadFile(srv.Log); return string(log) })

	c6, why := xpra6Client(t)
	if why != "" {
		t.Fatal(why)
	}
	// One client at a time: each gets counters of its own in `xpra info`.
	watch := func(t *testing.T, url string, p *proxylab.Proxy) {
		t.Helper()
		contexts := strings.Count(enc.Logs(), "xpra encoder: context")
		a := attachFor(t, c6, url, "--mmap=no", "--encoding=stream")
		defer a.stop()
		const want = 25 // one second of the animation
		deadline := time.Now().Add(90 * time.Second)
		for {
			info := srv.Info(t, "")
			frames, remote := remoteFrames(info)
			if frames >= want && remote && info["clients"] == "1" && xpra6lab.DrawsAcked(info) > 0 {
				t.Logf("%d h264 frames from the remote encoder (remote-x264), %d draws acknowledged by the client",
					frames, xpra6lab.DrawsAcked(info))
				break
			}
			if a.disconnected() {
				t.Fatalf("the client was disconnected:\n%s", a.out)
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 90s: %d h264 frames (want %d), remote-x264 %v, clients %q\nclient:\n%s\nencoder:\n%s",
					frames, want, remote, info["clients"], a.out, enc.Logs())
			}
			time.Sleep(time.Second)
		}
		// Our encoder made them: a new h264 context for the server's uid.
		logs := enc.Logs()
		if strings.Count(logs, "xpra encoder: context") <= contexts ||
			!strings.Contains(logs, fmt.Sprintf("uid=%d", srv.UID)) || !strings.Contains(logs, "codec=h264") {
			t.Fatalf("no new h264 context for uid %d in the encoder's log:\n%s", srv.UID, logs)
		}
		if p != nil && !strings.Contains(p.Logs(), "msg=relaying") {
			t.Fatalf("the session was not relayed by the proxy:\n%s", p.Logs())
		}
	}
	t.Run("direct", func(t *testing.T) { watch(t, srv.TCP(""), nil) })
	if t.Failed() {
		return
	}
	waitFor(t, 30*time.Second, "the direct client to leave", func() bool {
		return srv.Info(t, "")["clients"] == "0"
	}, func() string { return "" })

	t.Run("through the proxy", func(t *testing.T) {
		bin := proxylab.Build(t)
		db := filepath.Join(t.TempDir(), "users.sdb")
		for _, args := range [][]string{{"create"},
			{"add", "enc", "secret-enc", strconv.Itoa(srv.UID), strconv.Itoa(srv.GID), srv.TCP(""), "", ""}} {
			out, err := exec.Command(filepath.Join(bin, "xpra-proxy"), append([]string{"auth", "sqlite", db}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("xpra-proxy auth sqlite %v: %v\n%s", args, err, out)
			}
		}
		p := proxylab.Start(t, "--tcp-auth=sqlite,filename="+db)
		watch(t, fmt.Sprintf("tcp://enc:secret-enc@%s/", p.Addr()), p)
	})
}

// waitFor polls ok every 200 ms until it holds, failing the test with
// detail() after within.
func waitFor(t *testing.T, within time.Duration, what string, ok func() bool, detail func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s:\n%s", what, within, detail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
