// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpra6lab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// peer is one xpra release on both ends: its real client, and a real
// server of the same release that the proxy sends the sqlite user
// `account` to.
type peer struct {
	realClient
	account string
	// wantVersion is what `xpra version` through the proxy must print
	// for this client (see "Which version each client is told" in
	// ARCHITECTURE.md).
	wantVersion string
	// attachArgs keep the client's pixels on the wire: with mmap a client
	// and server on one machine would share memory around the proxy.
	attachArgs []string
	// serverInfo is the server's own `xpra info`, asked directly.
	serverInfo func(t *testing.T) map[string]string
	server     string // its tcp:// URL, for the sqlite row
	uid, gid   int
}

// attachFor attaches c through url under its own Xvfb until it says so.
func attachFor(t *testing.T, c realClient, url string, extra ...string) *attached {
	t.Helper()
	return startAttachWith(t, c.bin, c.env, url, extra...)
}

// TestRealPeers runs the real clients of xpra 3.1.3 (Debian's) and 6.5.3
// (../shared/lab/xpra6, package xpra6lab) through the proxy to real
// servers of their own release, over every transport one port carries,
// from one table: `version`, `info`, a wrong password, and `attach` with
// the draws the client acknowledged read from the server's own `xpra
// info`. Logins go through the sqlite module, whose rows send each
// release's user to its server by URL. The 6.x half skips where the
// build is missing (fails under CI, which builds it).
func TestRealPeers(t *testing.T) {
	xpralab.Require(t)
	testenv6 := xpra6lab.Missing()
	if testenv6 != "" && os.Getenv("CI") == "true" {
		t.Fatalf("the xpra %s build: %s", xpra6lab.Version, testenv6)
	}
	const app = "xclock -update 1" // draws every second: there is always a draw to acknowledge
	old := xpralab.Start(t, xpralab.Options{App: app, Args: []string{"--session-name=real-peers-3"}})
	peers := []peer{{realClient: system313(), account: "old", wantVersion: "3.1.3",
		attachArgs: []string{"--mmap=no"}, server: old.TCP(""), uid: old.UID, gid: old.GID,
		serverInfo: func(t *testing.T) map[string]string {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := old.Command(ctx, "info", old.Display).Output()
			if err != nil {
				t.Fatalf("xpra info %s: %v\n%s", old.Display, err, out)
			}
			return xpra6lab.ParseInfo(string(out))
		}}}
	if testenv6 == "" {
		srv := xpra6lab.Start(t, xpra6lab.Options{App: app})
		c6, _ := xpra6Client(t)
		peers = append(peers, peer{realClient: c6, account: "new", wantVersion: "6.5.3",
			attachArgs: []string{"--mmap=no"}, server: srv.TCP(""), uid: srv.UID, gid: srv.GID,
			serverInfo: func(t *testing.T) map[string]string { return srv.Info(t, "") }})
	} else {
		t.Run("xpra "+xpra6lab.Version, func(t *testing.T) { t.Skipf("skipped: %s", testenv6) })
	}

	bin := proxylab.Build(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "users.sdb")
	admin := func(args ...string) {
		t.Helper()
		out, err := exec.Command(filepath.Join(bin, "xpra-proxy"), append([]string{"auth", "sqlite", db}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("xpra-proxy auth sqlite %v: %v\n%s", args, err, out)
		}
	}
	admin("create")
	for _, p := range peers {
		admin("add", p.account, "secret-"+p.account, fmt.Sprint(p.uid), fmt.Sprint(p.gid), p.server, "", "")
	}
	cert, key := testCert(t, dir)
	// Wrong passwords on purpose, then right ones at once: no penalty.
	p := proxylab.Start(t, "--tcp-auth=sqlite,filename="+db, "--ssl-cert="+cert, "--ssl-key="+key,
		"--per-source-penalty=0", "--per-source-max-startups=0")

	// Where releases meet: each client sent to the other release's
	// server is told so, in words, by the proxy.
	if len(peers) == 2 {
		for i, pe := range peers {
			other := peers[1-i]
			t.Run(fmt.Sprintf("xpra %s client to a %s server", pe.version, other.version), func(t *testing.T) {
				before := other.serverInfo(t)
				out := attachOnce(t, pe.realClient, fmt.Sprintf("tcp://%s:secret-%s@%s/", other.account, other.account, p.Addr()))
				t.Logf("xpra %s attach to a %s session:\n%s", pe.version, other.version, out)
				// 6.x clients name only major.minor in their hello.
				for _, want := range []string{"xpra versions do not match", "this client, xpra " + pe.version[:3],
					"Attach to it with an xpra client of the server's release"} {
					if !strings.Contains(out, want) {
						t.Errorf("no %q in the client's output", want)
					}
				}
				after := other.serverInfo(t)
				if before["clients"] != after["clients"] {
					t.Errorf("the session was touched: clients %q, then %q", before["clients"], after["clients"])
				}
			})
		}
	}

	type row struct {
		req  string // version, info, wrong password, attach
		want func(pe peer) string
	}
	rows := []row{
		{"version", func(pe peer) string { return "\n" + pe.wantVersion + "\n" }},
		{"info", func(peer) string { return "server.type=xpra-proxy" }},
		{"wrong password", func(peer) string { return "authentication failed" }},
		{"attach", nil},
	}
	for _, pe := range peers {
		for _, scheme := range []string{"tcp", "ws", "ssl", "wss"} {
			for _, r := range rows {
				t.Run(fmt.Sprintf("xpra %s %s over %s", pe.version, r.req, scheme), func(t *testing.T) {
					creds := pe.account + ":secret-" + pe.account
					var args []string
					switch r.req {
					case "version":
						args = []string{"version", fmt.Sprintf("%s://%s/", scheme, p.Addr())}
					case "info":
						args = []string{"info", fmt.Sprintf("%s://%s@%s/", scheme, creds, p.Addr())}
					case "wrong password":
						args = []string{"info", fmt.Sprintf("%s://%s:wrong@%s/", scheme, pe.account, p.Addr())}
					case "attach":
						attachThrough(t, pe, p, fmt.Sprintf("%s://%s@%s/", scheme, creds, p.Addr()), scheme, cert)
						return
					}
					if scheme == "ssl" || scheme == "wss" {
						args = append(args, pe.trust(cert))
					}
					run := runClient(pe.realClient, args)
					if want := r.want(pe); !strings.Contains(run.out, want) {
						t.Fatalf("xpra %s %s: no %q in:%s", pe.version, strings.Join(args, " "), strings.TrimSpace(want), run.out)
					}
				})
			}
		}
	}
}

// attachOnce runs c's `xpra attach url` under its own Xvfb until it
// exits (within a minute) and returns what it printed.
func attachOnce(t *testing.T, c realClient, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"-n", strconv.Itoa(xpralab.FreeDisplay()), "-s", "-screen 0 1024x768x24", c.bin, "attach", url, "--mmap=no",
		"--mdns=no", "--pulseaudio=no", "--notifications=no", "--opengl=no", "--speaker=off", "--microphone=off",
		"--webcam=no", "--printing=no", "--file-transfer=no", "--tray=no", "--system-tray=no", "--clipboard=no"}, extra...)
	cmd := exec.CommandContext(ctx, "xvfb-run", args...)
	cmd.Env = c.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, _ := cmd.CombinedOutput() // the exit code varies with xpra's version; the output says what happened
	if ctx.Err() != nil {
		t.Fatalf("xpra %s attach %s still running after a minute:\n%s", c.version, url, out)
	}
	return string(out)
}

// attachThrough attaches pe's client through the proxy and waits until
// the server's own `xpra info` counts draws acknowledged by a client:
// pixels went out through the proxy and the acknowledgements came back.
func attachThrough(t *testing.T, pe peer, p *proxylab.Proxy, url, scheme, cert string) {
	t.Helper()
	before := xpra6lab.DrawsAcked(pe.serverInfo(t))
	mark := len(p.Logs())
	args := append([]string{}, pe.attachArgs...)
	if scheme == "ssl" || scheme == "wss" {
		args = append(args, pe.trust(cert))
	}
	a := attachFor(t, pe.realClient, url, args...)
	defer a.stop()
	// Generous: Python clients on a shared two-core machine.
	deadline := time.Now().Add(60 * time.Second)
	for {
		info := pe.serverInfo(t)
		if n := xpra6lab.DrawsAcked(info); n > before && info["clients"] == "1" {
			t.Logf("xpra %s over %s: %d draws acknowledged through the proxy", pe.version, scheme, n-before)
			break
		}
		if a.disconnected() {
			t.Fatalf("the client was disconnected:\n%s", a.out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no draw acknowledged within 60s (server info clients=%q)\nclient:\n%s", info["clients"], a.out)
		}
		time.Sleep(time.Second)
	}
	if !strings.Contains(p.Logs()[mark:], `msg=relaying`) {
		t.Fatalf("the session was not relayed by the proxy:\n%s", p.Logs()[mark:])
	}
}

// TestPenaltyTold: a real client refused during its address's penalty
// (after a failed login) is told so in words, by both releases: at the
// accept, a "disconnect:" line the client prints, instead of a bare
// close ("failed to receive anything, not an xpra server?" before).
func TestPenaltyTold(t *testing.T) {
	xpralab.Require(t)
	clients := []realClient{system313()}
	if c6, why := xpra6Client(t); why == "" {
		clients = append(clients, c6)
	} else if os.Getenv("CI") == "true" {
		t.Fatalf("the xpra %s build: %s", xpra6lab.Version, why)
	} else {
		t.Run("xpra "+xpra6lab.Version, func(t *testing.T) { t.Skipf("skipped: %s", why) })
	}
	u, _, _ := xpralab.TestUser(t)
	for _, c := range clients {
		t.Run("xpra "+c.version, func(t *testing.T) {
			// One proxy per client: the penalty is the address's. Long: a
			// Python client can take 20 s to start on a loaded machine.
			p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--per-source-penalty=120s", "--per-source-penalty-max=120s")
			if out := runClient(c, []string{"info", fmt.Sprintf("tcp://%s:wrong@%s/", u.Username, p.Addr())}).out; !strings.Contains(out, "authentication failed") {
				t.Fatalf("wrong password:%s", out)
			}
			out := runClient(c, []string{"info", fmt.Sprintf("tcp://%s:secret@%s/", u.Username, p.Addr())}).out
			t.Logf("xpra %s during the penalty:%s", c.version, out)
			if !strings.Contains(out, "too many failed logins from your address, wait") {
				t.Fatalf("the client was not told of the penalty:%s", out)
			}
			if !strings.Contains(p.Logs(), "penalty until") {
				t.Fatalf("the proxy did not refuse for the penalty:\n%s", p.Logs())
			}
		})
	}
}
