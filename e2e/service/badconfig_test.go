// SPDX-License-Identifier: GPL-2.0-or-later

//go:build testbed

package service_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/probe"
)

// badConfig: an admin's typo in the config file, then a restart and
// clients connecting. The sockets must stay active (systemd would fail
// them after its trigger limit if the service kept failing), the status
// must name the key, clients must fail fast rather than hang, the attached
// client must stay, and fixing the file plus one restart serves again.
func (b *bed) badConfig(t *testing.T) {
	const path = "/etc/xpra-proxy/xpra-proxy.toml"
	if err := os.WriteFile(path, []byte(strings.Replace(config, "tcp-auth", "tcp-auht", 1)), 0o640); err != nil {
		t.Fatal(err)
	}
	restored := false
	defer func() {
		if !restored {
			_ = os.WriteFile(path, []byte(config), 0o640)
			try("systemctl", "restart", "xpra-proxy.service")
		}
	}()
	out, err := tryErr("/usr/bin/xpra-proxy", "--check-config", "--config="+path)
	if err == nil || !strings.Contains(out, "tcp-auht") || !strings.Contains(out, path) {
		t.Errorf("--check-config on the bad file: %v\n%s", err, out)
	}
	sh(t, "systemctl", "restart", "xpra-proxy.service")
	// Many clients, more than systemd's trigger limit (20 in 2 s).
	var slowest time.Duration
	for i := range 40 {
		url := "tcp://" + tcpAddr + "/"
		if i%2 == 1 {
			url = "socket://" + unixSocket
		}
		t0 := time.Now()
		_, err := probe.Run(context.Background(), probe.Options{URL: url, Request: "version", Timeout: 10 * time.Second})
		if err == nil {
			t.Fatalf("%s answered with the bad config", url)
		}
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("40 connections refused under the bad config, the slowest in %v", slowest.Round(time.Millisecond))
	for _, unit := range []string{"xpra-proxy.socket", "xpra-proxy-unix.socket", "xpra-proxy.service"} {
		if got := strings.TrimSpace(try("systemctl", "is-active", unit)); got != "active" {
			t.Errorf("%s is %q under a bad config:\n%s", unit, got, try("systemctl", "status", "--no-pager", unit))
		}
	}
	if st := try("systemctl", "status", "--no-pager", "xpra-proxy.service"); !strings.Contains(st, "tcp-auht") {
		t.Errorf("systemctl status does not name the bad key:\n%s", st)
	}
	if !alive(b.relay) || b.attached.disconnected() {
		t.Errorf("the attached client's relay %d went with the bad config", b.relay)
	}

	if err := os.WriteFile(path, []byte(config), 0o640); err != nil {
		t.Fatal(err)
	}
	restored = true
	sh(t, "systemctl", "restart", "xpra-proxy.service")
	for _, url := range []string{"tcp://" + tcpAddr + "/", "socket://" + unixSocket} {
		if _, err := probe.Run(context.Background(), probe.Options{URL: url, Request: "version", Timeout: 20 * time.Second}); err != nil {
			t.Errorf("%s after fixing the file and one restart: %v", url, err)
		}
	}
}
