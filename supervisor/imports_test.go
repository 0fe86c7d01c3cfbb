package supervisor

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestSupervisorImports keeps the root process free of everything that
// parses what clients send (ARCHITECTURE.md): no xpra packet code, no
// codecs, no TLS or HTTP, no NVML, no libpam.
func TestSupervisorImports(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./cmd/xpra-proxy")
	cmd.Dir = "../"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/xpra-proxy/xpra-proxy/protocol/wire",
		"github.com/xpra-proxy/xpra-proxy/protocol/rencode",
		"github.com/xpra-proxy/xpra-proxy/protocol/bencode",
		"github.com/xpra-proxy/xpra-proxy/protocol/compress",
		"github.com/xpra-proxy/xpra-proxy/protocol/cipher",
		"github.com/xpra-proxy/xpra-proxy/protocol/conn",
		"github.com/xpra-proxy/xpra-proxy/protocol/caps",
		"github.com/xpra-proxy/xpra-proxy/protocol/packet",
		"github.com/xpra-proxy/xpra-proxy/protocol/challenge",
		"github.com/xpra-proxy/xpra-proxy/protocol/value",
		"github.com/xpra-proxy/xpra-proxy/protocol/websocket",
		"github.com/xpra-proxy/xpra-proxy/protocol/xpraurl",
		"github.com/xpra-proxy/xpra-proxy/handover",
		"github.com/xpra-proxy/xpra-proxy/worker",
		"github.com/xpra-proxy/xpra-proxy/preauth",
		"github.com/xpra-proxy/xpra-proxy/probe",
		"github.com/pierrec/lz4",
		"github.com/andybalholm/brotli",
		"github.com/gobwas/ws",
		"github.com/NVIDIA/go-nvml",
		"github.com/msteinert/pam",
		"crypto/tls",
		"net/http",
		"compress/",
	}
	// go-systemd's activation package links crypto/tls for helpers we do
	// not call (TLSListeners); it is the one importer allowed, and nothing
	// of ours may import it.
	allowed := map[string]string{"crypto/tls": "github.com/coreos/go-systemd/v22/activation"}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 20 {
		t.Fatalf("go list gave %d packages", len(lines))
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		for _, imp := range imports {
			for _, f := range forbidden {
				if imp == f || strings.HasPrefix(imp, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(imp, f)) {
					if allowed[imp] != pkg && !strings.HasPrefix(pkg, "crypto/tls") {
						t.Errorf("%s imports %s", pkg, imp)
					}
				}
			}
		}
	}
}
