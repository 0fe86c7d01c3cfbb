// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// Sessions on demand where they cannot be started: the real xpra client's
// requests (xpra start|shadow tcp://... --attach=no, which send
// start-new-session) get clear refusals, and the proxy keeps serving. The
// successful start, as a logind session, is e2e/service's, in the systemd
// testbed.
func TestSessionOnDemandRefused(t *testing.T) {
	xpralab.Require(t)
	u, _, _ := xpralab.TestUser(t)
	p := proxylab.Start(t, "--tcp-auth=none", "--per-source-penalty=0")
	never := proxylab.Start(t, "--tcp-auth=none", "--start-session=never")

	t.Run("starting disabled", func(t *testing.T) {
		out := xpraClient(t, 60*time.Second, "start", never.URL(u.Username, ""), "--attach=no", "--start=xterm")
		if !strings.Contains(out, "this proxy does not start sessions") {
			t.Fatalf("xpra start with start-session=never:\n%s", out)
		}
	})
	t.Run("shadow is not started", func(t *testing.T) {
		out := xpraClient(t, 60*time.Second, "shadow", p.URL(u.Username, ""), "--attach=no")
		if !strings.Contains(out, "failed to start a new session") || !strings.Contains(out, `cannot start sessions of mode "shadow"`) {
			t.Fatalf("xpra shadow:\n%s", out)
		}
	})
	t.Run("display outside session-displays", func(t *testing.T) {
		out := xpraClient(t, 60*time.Second, "start", p.URL(u.Username, "7"), "--attach=no")
		if !strings.Contains(out, "display :7 is not one the proxy starts sessions on (:100 to :999)") {
			t.Fatalf("xpra start tcp://.../7:\n%s", out)
		}
	})
	t.Run("no systemd", func(t *testing.T) {
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			t.Skip("systemd runs here: a start would succeed (e2e/service tests that, in the testbed)")
		}
		out := xpraClient(t, 90*time.Second, "start", p.URL(u.Username, ""), "--attach=no", "--start=xterm")
		if !strings.Contains(out, "failed to start a new session") {
			t.Fatalf("xpra start without systemd:\n%s", out)
		}
		if logs := p.Logs(); !strings.Contains(logs, "starting a session") || !strings.Contains(logs, "system bus") {
			t.Fatalf("the supervisor did not log why:\n%s", logs)
		}
		// And the proxy still answers.
		if out := xpraClient(t, 30*time.Second, "info", p.URL(u.Username, "")); !strings.Contains(out, "server.type=xpra-proxy") {
			t.Fatalf("xpra info after the failed start:\n%s", out)
		}
	})
}
