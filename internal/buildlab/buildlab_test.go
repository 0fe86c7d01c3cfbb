// SPDX-License-Identifier: GPL-2.0-or-later

package buildlab

import (
	"debug/buildinfo"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDir(t *testing.T) {
	steps := []Step{
		{Pkgs: []string{"./cmd/xpra-proxy-session"}},
		{Env: []string{"CGO_ENABLED=0"}, Pkgs: []string{"./cmd/xpra-proxy-preauth"}},
	}
	dir := Dir(t, steps...)
	if again := Dir(t, steps...); again != dir {
		t.Errorf("second build of the same steps into %s, want %s again", again, dir)
	}
	if other := Program(t, "./cmd/xpra-proxy-session"); filepath.Dir(other) == dir {
		t.Errorf("other steps built into the same directory %s", dir)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %v, want 0755", st.Mode().Perm())
	}
	for _, c := range []struct {
		prog, cgo string
	}{
		{"xpra-proxy-preauth", "0"},
		{"xpra-proxy-session", ""}, // the default: whatever the toolchain says
	} {
		info, err := buildinfo.ReadFile(filepath.Join(dir, c.prog))
		if err != nil {
			t.Fatalf("%s: %v", c.prog, err)
		}
		got := ""
		for _, s := range info.Settings {
			if s.Key == "CGO_ENABLED" {
				got = s.Value
			}
		}
		if c.cgo != "" && got != c.cgo {
			t.Errorf("%s built with CGO_ENABLED=%q, want %q", c.prog, got, c.cgo)
		}
	}
}

func TestBuildError(t *testing.T) {
	_, err := run([]Step{{Pkgs: []string{"./cmd/no-such-program"}}})
	if err == nil || !strings.Contains(err.Error(), "./cmd/no-such-program") {
		t.Fatalf("build of a missing package: %v", err)
	}
}
