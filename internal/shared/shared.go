// SPDX-License-Identifier: GPL-2.0-or-later

// Package shared finds the project's ../shared folder (specs, captures of
// real xpra traffic, lab scripts) for tests. The folder sits beside the
// repository in every checkout, CI's included.
package shared

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// find returns the shared folder: $XPRA_PROXY_SHARED, else ../shared
// beside the repository.
func find() (string, error) {
	if d := os.Getenv("XPRA_PROXY_SHARED"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(filepath.Dir(dir), "shared")
			if _, err := os.Stat(filepath.Join(d, "xpra", "PROTOCOL.md")); err == nil {
				return d, nil
			}
			break
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", errors.New("../shared (beside the repository) is missing; set XPRA_PROXY_SHARED to its path")
}

// inCI is CI's environment, where everything a test needs must be there.
func inCI() bool { return os.Getenv("CI") == "true" }

// Dir returns the shared folder. Tests call it; where the folder is missing
// they skip, except under CI (CI=true), where that is a failure.
func Dir(t testing.TB) string {
	t.Helper()
	d, err := find()
	if err == nil {
		return d
	}
	if inCI() {
		t.Fatalf("%v; CI must provide it", err)
	}
	t.Skip(err.Error())
	return ""
}

// Traces returns the folder of real xpra 3.1.3 captures.
func Traces(t testing.TB) string {
	return filepath.Join(Dir(t), "xpra", "traces")
}

// TraceSeeds reads the captures whose names match each pattern (a glob in
// the traces folder), sorted by name, as a fuzz target's seeds. A missing
// folder or a pattern that matches nothing fails the target under CI;
// elsewhere the target says so in its log and fuzzes from its other seeds
// (unlike Dir, it does not skip: a fuzz target is still worth running).
func TraceSeeds(tb testing.TB, patterns ...string) [][]byte {
	tb.Helper()
	missing := func(format string, args ...any) {
		tb.Helper()
		if inCI() {
			tb.Fatalf(format, args...)
		}
		tb.Logf(format+"; fuzzing without these real captures", args...)
	}
	d, err := find()
	if err != nil {
		missing("seeds %q: %v", patterns, err)
		return nil
	}
	dir := filepath.Join(d, "xpra", "traces")
	var out [][]byte
	for _, pat := range patterns {
		files, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			tb.Fatalf("seed pattern %q: %v", pat, err)
		}
		if len(files) == 0 {
			missing("no capture matches %s in %s", pat, dir)
			continue
		}
		sort.Strings(files)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				tb.Fatalf("seed: %v", err)
			}
			out = append(out, b)
		}
	}
	return out
}
