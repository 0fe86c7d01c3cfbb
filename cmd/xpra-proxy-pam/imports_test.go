package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestHelperImports keeps the root PAM helper to its one job: libpam, the
// request and reply, passwd lookups. Nothing that speaks xpra, the
// network or D-Bus belongs in a root process that holds a password.
func TestHelperImports(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list gave %d packages", len(deps))
	}
	for _, dep := range deps {
		for _, bad := range []string{
			"github.com/xpra-proxy/xpra-proxy/protocol/", "github.com/xpra-proxy/xpra-proxy/supervisor",
			"github.com/xpra-proxy/xpra-proxy/worker", "github.com/xpra-proxy/xpra-proxy/ipc",
			"github.com/godbus/", "github.com/coreos/", "crypto/tls", "net/http",
		} {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("xpra-proxy-pam depends on %s", dep)
			}
		}
	}
}
