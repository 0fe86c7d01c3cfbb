// SPDX-License-Identifier: GPL-2.0-or-later

package deptest

import (
	"slices"
	"strings"
	"testing"
)

func TestViolations(t *testing.T) {
	graph := map[string][]string{
		"cmd/x":          {"ours/a", "lib/b", "compress/gzip", "compressor"},
		"ours/a":         {"net/http", "lib/b"},
		"lib/b":          {"net/http"},
		"net/http":       {"crypto/tls", "net/http/trace"},
		"net/http/trace": {"crypto/tls"},
		"crypto/tls":     nil,
		"compress/gzip":  nil,
		"compressor":     nil,
	}
	for _, tc := range []struct {
		name  string
		rules []Rule
		want  []string
	}{
		{"a forbidden import, with its importer and reason",
			[]Rule{{Pkg: "net/http", Reason: "no HTTP"}},
			[]string{"lib/b imports net/http, which is forbidden: no HTTP", "ours/a imports net/http, which is forbidden: no HTTP"}},
		{"an allowed library, but not our own import",
			[]Rule{{Pkg: "net/http", Reason: "no HTTP", Via: map[string]string{"lib/b": "why"}}},
			[]string{"ours/a imports net/http, which is forbidden: no HTTP"}},
		{"imports inside the forbidden tree are not counted",
			[]Rule{{Pkg: "net/http", Reason: "r", Via: map[string]string{"lib/b": "", "ours/a": ""}}},
			nil},
		{"an allowance no longer needed",
			[]Rule{{Pkg: "crypto/tls", Reason: "r", Via: map[string]string{"net/http": "", "net/http/trace": "", "lib/b": ""}}},
			[]string{"lib/b is allowed to import crypto/tls but no longer does: drop the allowance"}},
		{"a trailing slash forbids what is under it only",
			[]Rule{{Pkg: "compress/", Reason: "r"}},
			[]string{"cmd/x imports compress/gzip, which is forbidden: r"}},
		{"without it, the package and its tree, but not a name that only starts the same",
			[]Rule{{Pkg: "compress", Reason: "r"}},
			[]string{"cmd/x imports compress/gzip, which is forbidden: r"}},
		{"the longer name is matched by its own rule",
			[]Rule{{Pkg: "compressor", Reason: "r"}},
			[]string{"cmd/x imports compressor, which is forbidden: r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Violations(graph, tc.rules); !slices.Equal(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// The real graph: the pre-auth binary terminates TLS, so forbidding
// crypto/tls there must name the package that imports it.
func TestImports(t *testing.T) {
	graph, err := Imports("./cmd/xpra-proxy-preauth")
	if err != nil {
		t.Fatal(err)
	}
	got := Violations(graph, []Rule{{Pkg: "crypto/tls", Reason: "test"}})
	want := "github.com/xpra-proxy/xpra-proxy/preauth/transport imports crypto/tls, which is forbidden: test"
	if !slices.Contains(got, want) {
		t.Errorf("violations %s\ndo not include %q", strings.Join(got, "\n"), want)
	}
}
