// SPDX-License-Identifier: GPL-2.0-or-later

package sandbox

import (
	"os"
	"strings"
	"testing"
)

// TestFiltersDocumented: ARCHITECTURE.md lists every allowed system call
// of every kind, with its reason (the table below "### Sandbox").
func TestFiltersDocumented(t *testing.T) {
	if os.Getenv("SANDBOX_PRINT_TABLE") != "" {
		printTable(t)
	}
	b, err := os.ReadFile("../ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	_, doc, ok := strings.Cut(string(b), "### Sandbox")
	if !ok {
		t.Fatal("ARCHITECTURE.md has no ### Sandbox section")
	}
	doc, _, _ = strings.Cut(doc, "\n## ")
	for _, k := range []Kind{Preauth, Transport, Control, LDAP, Directory} {
		rules, err := Rules(k, Options{ConnectTCP: []uint16{1}, ConnectUnix: "/run/x/socket"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if !strings.Contains(doc, "`"+r.Name+"`") {
				t.Errorf("%s: %s is allowed but not documented in ARCHITECTURE.md", k, r.Name)
			}
		}
	}
}

// printTable writes the table ARCHITECTURE.md holds (run with
// SANDBOX_PRINT_TABLE=1 -v after changing a filter).
func printTable(t *testing.T) {
	type row struct {
		kinds []string
		whys  []string
	}
	rows := map[string]*row{}
	var order []string
	for _, k := range []Kind{Preauth, Transport, Control, LDAP, Directory} {
		rules, _ := Rules(k, Options{ConnectTCP: []uint16{1}, ConnectUnix: "/run/x/socket"})
		for _, r := range rules {
			key := r.Name
			rw := rows[key]
			if rw == nil {
				rw = &row{}
				rows[key] = rw
				order = append(order, key)
			}
			if len(rw.kinds) == 0 || rw.kinds[len(rw.kinds)-1] != string(k) {
				rw.kinds = append(rw.kinds, string(k))
			}
			w := r.Why
			if cond := condString(r); cond != "" {
				w = cond + ": " + w
			}
			if !contains(rw.whys, w) {
				rw.whys = append(rw.whys, w)
			}
		}
	}
	var sb strings.Builder
	sb.WriteString("| system call | preauth | transport | control | ldap | directory | why |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, name := range order {
		rw := rows[name]
		mark := func(k Kind) string {
			if contains(rw.kinds, string(k)) {
				return "✓"
			}
			return ""
		}
		sb.WriteString("| `" + name + "` | " + mark(Preauth) + " | " + mark(Transport) + " | " + mark(Control) + " | " + mark(LDAP) + " | " + mark(Directory) + " | " + strings.Join(rw.whys, "; ") + " |\n")
	}
	t.Log("\n" + sb.String())
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func condString(r Rule) string {
	var parts []string
	for _, c := range r.Args {
		parts = append(parts, "arg"+string(rune('0'+c.Argument))+" "+string(c.Operation)+" "+hex(c.Value))
	}
	return strings.Join(parts, ", ")
}

func hex(v uint64) string {
	const digits = "0123456789abcdef"
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{digits[v%16]}, b...)
		v /= 16
	}
	return "0x" + string(b)
}
