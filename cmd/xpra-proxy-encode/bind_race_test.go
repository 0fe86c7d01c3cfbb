// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// TestBindRacesSymlinks: root binds the encoder's socket 1,000 times while
// an unprivileged user keeps planting a symlink at its path to a
// root-owned 0600 file. In a directory that user can write, root refuses
// to bind at all; in root's own directory the user cannot plant anything.
// Either way the root-owned file keeps its owner and mode.
func TestBindRacesSymlinks(t *testing.T) {
	testenv.Root(t)
	base := testenv.SharedTempDir(t)
	target := filepath.Join(base, "root-only")
	if err := os.WriteFile(target, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := testenv.StatOwnerMode(t, target)
	for _, tc := range []struct {
		name     string
		owner    int
		mode     os.FileMode
		refusals bool
	}{
		{"a directory the user owns", testenv.Nobody, 0o755, true},
		{"a world-writable sticky directory", 0, os.ModeSticky | 0o777, true},
		{"root's own directory", 0, 0o755, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(base, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, tc.owner, tc.owner); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "socket")
			stop := testenv.SymlinkSwapper(t, path, target)
			if tc.refusals { // the user can write there: it must get in
				testenv.WaitPlanted(t, path)
			}
			refused := 0
			for range 1000 {
				f, err := bind(path, true)
				if err != nil {
					if !strings.Contains(err.Error(), "socket directory") && !strings.Contains(err.Error(), "not a socket") {
						t.Fatalf("bind: unexpected error %v", err)
					}
					refused++
					continue
				}
				f.Close()
				os.Remove(path)
			}
			stop()
			if tc.refusals && refused != 1000 {
				t.Errorf("bound %d times in %s", 1000-refused, tc.name)
			}
			if !tc.refusals && refused != 0 {
				t.Errorf("refused %d times in root's own directory", refused)
			}
			if after := testenv.StatOwnerMode(t, target); after != before {
				t.Fatalf("the root-owned file went from %+v to %+v", before, after)
			}
		})
	}
}
