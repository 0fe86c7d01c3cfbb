// Package shared finds the project's ../shared folder (specs, captures of
// real xpra traffic, lab scripts) for tests. The folder sits beside the
// repository in every checkout, CI's included.
package shared

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the shared folder. Tests call it; where the folder is missing
// they skip, except under CI (CI=true), where that is a failure.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("XPRA_PROXY_SHARED"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(filepath.Dir(dir), "shared")
			if _, err := os.Stat(filepath.Join(d, "xpra", "PROTOCOL.md")); err == nil {
				return d
			}
			break
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("../shared (beside the repository) is missing; CI must provide it")
	}
	t.Skip("../shared (beside the repository) is missing; set XPRA_PROXY_SHARED to its path")
	return ""
}

// Traces returns the folder of real xpra 3.1.3 captures.
func Traces(t testing.TB) string {
	return filepath.Join(Dir(t), "xpra", "traces")
}
