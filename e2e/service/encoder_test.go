//go:build testbed

package service_test

import (
	"context"
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/control"
	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

const (
	encoderUnit   = "xpra-proxy-encode.service"
	encoderUser   = "xpra-proxy-encode"
	encoderSocket = "/run/xpra-proxy-encode/socket"
	// xpra's own encoder protocol, for 6.4+ servers (--video-encoders=remote).
	encoderXpraSocket = "/run/xpra-proxy-encode/xpra"
)

// encoder: the packaged encoder service runs as its own user, confined,
// with the GPU groups; relays of the restarted supervisor re-encode a
// real session's window through it; killing it leaves the client
// attached and, once systemd has restarted it, drawing H.264 again.
func (b *bed) encoder(t *testing.T) {
	debs, _ := filepath.Glob(filepath.Join(filepath.Dir(packageFile(t)), "xpra-proxy-encode_*.deb"))
	if len(debs) != 1 {
		testenv.Missing(t, "the encoder's .deb beside the test binary (deb/xpra-proxy-encode_*.deb): run scripts/testbed-tests.sh")
	}
	sh(t, "dpkg", "-i", debs[0])
	defer func() {
		if t.Failed() {
			t.Logf("%s\njournal of the encoder:\n%s", try("systemctl", "status", "--no-pager", encoderUnit), journal(encoderUnit))
		}
	}()
	// The package enables and starts it; the testbed's lower layer (a
	// container host) has a policy-rc.d that denies starts from maintainer
	// scripts, as it did for the sockets in install.
	sh(t, "systemctl", "start", encoderUnit)
	// Type=simple is active from the fork on: wait for its sockets.
	waitFor(t, 20*time.Second, encoderUnit+" to serve", func() bool {
		_, err := os.Stat(encoderXpraSocket)
		return strings.TrimSpace(try("systemctl", "is-active", encoderUnit)) == "active" && err == nil
	})
	if got := strings.TrimSpace(try("systemctl", "is-enabled", encoderUnit)); got != "enabled" {
		t.Errorf("%s is %q after installation", encoderUnit, got)
	}
	u, err := user.Lookup(encoderUser)
	if err != nil {
		t.Fatalf("the package did not create %s: %v", encoderUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	groups, _ := u.GroupIds()
	for _, g := range []string{"video", "render"} {
		grp, err := user.LookupGroup(g)
		if err != nil || !slices.Contains(groups, grp.Gid) {
			t.Errorf("%s is not in group %s (%v): its groups %v", encoderUser, g, err, groups)
		}
	}
	pid := mainPID(t, encoderUnit)
	p := proclab.Read(pid)
	proclab.CheckConfined(t, p, uid, gid, groups)
	t.Logf("encoder %d: Uid %s, Groups %s, CapEff %s, NoNewPrivs %s", pid, p.Status["Uid"], p.Status["Groups"],
		p.Status["CapEff"], p.Status["NoNewPrivs"])
	for _, path := range []string{encoderSocket, encoderXpraSocket} {
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil || int(st.Uid) != uid || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
			t.Fatalf("%s: %v, owner %d (want %d), mode %o", path, err, st.Uid, uid, st.Mode)
		}
	}

	// The admin points the proxy at it; new relays use it.
	if err := os.WriteFile("/etc/xpra-proxy/xpra-proxy.toml", []byte(config+"encoder-socket = \""+encoderSocket+"\"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	sh(t, "systemctl", "restart", "xpra-proxy.service")
	c := startClient(t, "ssl://"+testUser+":"+testPassword+"@"+tcpAddr+"/101", "--ssl-server-verify-mode=none")
	defer c.stop()
	ctl := relayControl(t, "101", b.relay) // not the earlier client's relay, which this one replaces
	first := waitFrames(t, ctl, 1, 60*time.Second, "H.264 frames of the session's xclock through the encoder service")
	t.Logf("relay counters through the encoder service: %v", first)

	sh(t, "systemctl", "kill", "--signal=SIGKILL", encoderUnit)
	waitFor(t, 20*time.Second, "systemd to restart the encoder", func() bool {
		_, err := os.Stat(encoderXpraSocket)
		// Not mainPID: right after the kill, is-active may still say
		// "active" while MainPID already reads 0.
		now := unitPID(encoderUnit)
		return strings.TrimSpace(try("systemctl", "is-active", encoderUnit)) == "active" && now != 0 && now != pid && err == nil
	})
	again := waitFrames(t, ctl, first["encode.frames"]+1, 60*time.Second, "H.264 frames again after the encoder's restart")
	t.Logf("after the restart: %v", again)
	if c.disconnected() {
		t.Fatalf("the client went with the encoder:\n%s", c.out)
	}
}

func mainPID(t *testing.T, unit string) int {
	t.Helper()
	pid := unitPID(unit)
	if pid == 0 {
		t.Fatalf("%s: no main pid: %s", unit, try("systemctl", "status", "--no-pager", unit))
	}
	return pid
}

// unitPID is the unit's main pid, 0 when it has none (or systemctl fails).
func unitPID(unit string) int {
	pid, _ := strconv.Atoi(strings.TrimSpace(try("systemctl", "show", "--property=MainPID", "--value", unit)))
	return pid
}

// relayControl is the control socket of the relay to display :N, other
// than the one of pid not, from xpra-proxy list --json.
func relayControl(t *testing.T, display string, not int) string {
	t.Helper()
	var path string
	waitFor(t, 30*time.Second, "the relay to :"+display+" in xpra-proxy list", func() bool {
		var conns []connlist.Conn
		if json.Unmarshal([]byte(try("xpra-proxy", "list", "--json")), &conns) != nil {
			return false
		}
		for _, c := range conns {
			if c.Control != "" && c.Pid != not && strings.HasSuffix(c.Target, "-"+display) {
				path = c.Control
				return true
			}
		}
		return false
	})
	return path
}

// waitFrames polls the relay's proxy.encode counters until at least n
// H.264 frames went to the client.
func waitFrames(t *testing.T, ctl string, n int64, d time.Duration, what string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	waitFor(t, d, what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		info, err := control.Query(ctx, ctl, "info")
		if err != nil {
			return false
		}
		c := caps.New(info)
		for _, k := range []string{"encode.frames", "encode.rgb", "encode.failures", "encode.refused", "encode.contexts"} {
			got[k] = c.Int("proxy."+k, 0)
		}
		return got["encode.frames"] >= n
	})
	return got
}
