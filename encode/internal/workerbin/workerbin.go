// SPDX-License-Identifier: GPL-2.0-or-later

// Package workerbin builds the encoder worker binary for tests and
// benchmarks that run it as a real process.
package workerbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Build compiles cmd/xpra-proxy-encode into dir and returns its path.
// dir should be readable by every user: started as root, the worker
// drops to its own user and re-executes itself.
func Build(dir string) (string, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	bin := filepath.Join(dir, "xpra-proxy-encode")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/xpra-proxy/xpra-proxy/cmd/xpra-proxy-encode").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	return bin, nil
}
