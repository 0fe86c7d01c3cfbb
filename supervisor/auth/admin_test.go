// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminUsage(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "db.sdb")
	missing := filepath.Join(dir, "missing.sdb")
	admin(t, 0, "sqlite", db, "create")
	tests := []struct {
		name string
		args []string
		want int
		msg  string // in the output
	}{
		{"no args", nil, 2, "usage:"},
		{"no command", []string{"sqlite", db}, 2, "usage:"},
		{"other module", []string{"multifile", db, "list"}, 2, "unknown module"},
		{"unknown command", []string{"sqlite", db, "drop"}, 2, "unknown command"},
		{"create with args", []string{"sqlite", db, "create", "x"}, 2, "usage:"},
		{"add too few", []string{"sqlite", db, "add", "foo"}, 2, "usage:"},
		{"add too many", []string{"sqlite", db, "add", "1", "2", "3", "4", "5", "6", "7", "8"}, 2, "usage:"},
		{"remove too few", []string{"sqlite", db, "remove"}, 2, "usage:"},
		{"remove too many", []string{"sqlite", db, "remove", "a", "b", "c"}, 2, "usage:"},
		{"list with args", []string{"sqlite", db, "list", "x"}, 2, "usage:"},
		{"create again", []string{"sqlite", db, "create"}, 1, "already exists"},
		{"add to missing", []string{"sqlite", missing, "add", "a", "b"}, 1, "no such file"},
		{"list missing", []string{"sqlite", missing, "list"}, 1, "no such file"},
		{"remove unknown", []string{"sqlite", db, "remove", "nobody-here"}, 1, "no matching rows"},
		{"add all seven", []string{"sqlite", db, "add", "1", "2", "3", "4", "5", "6", "7"}, 0, ""},
		{"set", []string{"sqlite", db, "set", "1", "displays", "X"}, 0, "1 rows changed"},
		{"set username", []string{"sqlite", db, "set", "1", "username", "x"}, 1, "no column"},
		{"set unknown column", []string{"sqlite", db, "set", "1", "uid=0;--", "x"}, 1, "no column"},
		{"set too few", []string{"sqlite", db, "set", "1", "uid"}, 2, "usage:"},
		{"set unknown user", []string{"sqlite", db, "set", "zz", "uid", "1"}, 1, "no matching rows"},
		{"postgresql without its URI file", []string{"postgresql", missing, "list"}, 1, "no such file"},
		{"list", []string{"sqlite", db, "list"}, 0, "1|***|3|4|X|6|7"},
		{"remove", []string{"sqlite", db, "remove", "1", "2"}, 0, "1 rows removed"},
		{"list empty", []string{"sqlite", db, "list"}, 0, "username|password|"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := admin(t, tt.want, tt.args...)
			if !strings.Contains(out, tt.msg) {
				t.Fatalf("output %q lacks %q", out, tt.msg)
			}
		})
	}
}
