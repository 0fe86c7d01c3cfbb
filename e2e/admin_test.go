// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// TestAdminCommand runs `xpra-proxy auth sqlite ...` as an admin would and
// checks xpra's own helper reads the result.
func TestAdminCommand(t *testing.T) {
	bin := filepath.Join(proxylab.Build(t), "xpra-proxy")
	db := filepath.Join(t.TempDir(), "users.sdb")
	for _, args := range [][]string{
		{"create"},
		{"add", "foo", "bar", "nobody", "nogroup", "tcp://127.0.0.1:10100/"},
		{"add", "moo", "cow", "nobody", "nogroup", "tcp://127.0.0.1:10101/", "", "compression=0"},
	} {
		out, err := exec.Command(bin, append([]string{"auth", "sqlite", db}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("xpra-proxy auth sqlite %v: %v\n%s", args, err, out)
		}
	}
	out, err := exec.Command(bin, "auth", "sqlite", db, "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "moo") || strings.Contains(string(out), "cow") {
		t.Fatalf("list (passwords must be masked): %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "auth", "sqlite", db, "bogus").CombinedOutput(); err == nil {
		t.Fatalf("an unknown subcommand succeeded:\n%s", out)
	}
	py := testenv.PythonModules(t, "xpra.server.auth.sqlite_auth")
	cmd := exec.Command(py, "/usr/lib/python3/dist-packages/xpra/server/auth/sqlite_auth.py", db, "list")
	cmd.Env = []string{"PATH=" + cleanPath}
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tcp://127.0.0.1:10101/") || !strings.Contains(string(out), "compression=0") {
		t.Fatalf("xpra's helper cannot read our database: %v\n%s", err, out)
	}
}
