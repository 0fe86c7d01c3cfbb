// SPDX-License-Identifier: GPL-2.0-or-later

package proxyctl

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenFallback: a control socket that lands in a later directory
// than the first says so, at warn level, naming both places; one in the
// first directory warns about nothing.
func TestListenFallback(t *testing.T) {
	base := t.TempDir()
	blocker := filepath.Join(base, "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	unusable, fallback := filepath.Join(blocker, "xpra"), filepath.Join(base, "home", ".xpra")
	for _, tc := range []struct {
		name string
		dirs []string
		warn bool
	}{
		{"first usable", []string{fallback}, false},
		{"runtime dir unusable", []string{unusable, fallback}, true},
	} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		l, err := Listen(tc.dirs, os.Getuid(), log)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		path := l.Addr().String()
		l.Close()
		if !strings.HasPrefix(path, fallback+"/") {
			t.Errorf("%s: socket at %s, want in %s", tc.name, path, fallback)
		}
		out := buf.String()
		warned := strings.Contains(out, "level=WARN") && strings.Contains(out, "fallback")
		if warned != tc.warn {
			t.Errorf("%s: warned %v, want %v:\n%s", tc.name, warned, tc.warn, out)
		}
		if tc.warn && (!strings.Contains(out, path) || !strings.Contains(out, unusable)) {
			t.Errorf("%s: the warning does not name both places:\n%s", tc.name, out)
		}
	}
	if _, err := Listen([]string{unusable}, os.Getuid(), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("no usable directory, yet no error")
	}
}
