// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/logscan"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// TestSocketActivation starts the supervisor the way xpra-proxy.socket
// does: systemd-socket-activate holds the listening socket and passes it
// with FileDescriptorName=tcp; the supervisor binds nothing itself.
func TestSocketActivation(t *testing.T) {
	testenv.Root(t)
	activate := testenv.Command(t, "systemd-socket-activate")
	bin := proxylab.Build(t)
	proxylab.EnsurePreauthUser(t)
	port := xpralab.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(activate, "-l", addr, "--fdname=tcp", filepath.Join(bin, "xpra-proxy"), "--tcp-auth=none")
	out := &proxylab.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket not listening:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err := probe.Run(t.Context(), probe.Options{URL: "tcp://" + addr + "/", Request: "version", Timeout: 20 * time.Second})
	if err != nil || res.ReplyCaps().Str("version", "") != "3.1.3" {
		t.Fatalf("version through an activated socket: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "listening type=tcp") {
		t.Fatalf("the supervisor did not take the socket as a tcp listener:\n%s", out)
	}
	// As proxylab.Start does for every other test.
	for _, line := range logscan.Bad(out.String()) {
		t.Errorf("our processes logged a crash or a bad end:\n%s", line)
	}
}
