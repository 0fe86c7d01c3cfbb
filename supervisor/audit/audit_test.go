// SPDX-License-Identifier: GPL-2.0-or-later

package audit

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMessageIDs: 128-bit ids in hex, one per event, each listed in the
// admin's docs.
func TestMessageIDs(t *testing.T) {
	docs := map[string]string{}
	for _, f := range []string{"../../packaging/README.md", "../../packaging/man/xpra-proxy.8"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = string(b)
	}
	seen := map[MessageID]bool{}
	hex := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, id := range IDs {
		if !hex.MatchString(string(id)) || seen[id] {
			t.Errorf("id %q: not 32 hex digits, or used twice", id)
		}
		seen[id] = true
		for f, text := range docs {
			if !strings.Contains(text, string(id)) {
				t.Errorf("%s does not list %s", f, id)
			}
		}
	}
}
