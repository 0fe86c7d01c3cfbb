// SPDX-License-Identifier: GPL-2.0-or-later

package packaging

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// spdx is the line every source file of ours carries near its top.
const spdx = "SPDX-License-Identifier: GPL-2.0-or-later"

// headerLines is how far down the line may be: after a shebang, a build
// constraint or a man page's preprocessor line.
const headerLines = 5

// licensed reports whether path (slash-separated, from the repository's
// root) is a source file that must carry the SPDX line: code, scripts, and
// the shipped files whose syntax has comments (units, sysusers, tmpfiles,
// PAM, the config, debian/rules, maintainer scripts, the spec, man pages).
// Lists without comments (debian/*.install, changelog) and documentation
// are not.
func licensed(path string) bool {
	base := filepath.Base(path)
	for _, ext := range []string{".go", ".c", ".h", ".sh", ".py", ".service", ".socket", ".toml", ".spec", ".rpmlintrc",
		".prerm", ".postinst", ".postrm", ".preinst", ".1", ".5", ".8"} {
		if strings.HasSuffix(base, ext) {
			return true
		}
	}
	for _, dir := range []string{"packaging/sysusers.d/", "packaging/tmpfiles.d/", "packaging/pam.d/"} {
		if strings.HasPrefix(path, dir) {
			return true
		}
	}
	return path == "debian/rules" || path == ".ci/run"
}

// TestSPDXHeaders fails for a source file of ours without the license
// line (issue 15). To add it: "// SPDX-License-Identifier: GPL-2.0-or-later"
// and a blank line first in Go and C files; "# ..." after the shebang in
// scripts, first in units and configuration files; `.\" ...` first in man
// pages.
func TestSPDXHeaders(t *testing.T) {
	checked := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			// Hidden directories (.git, editors' state) but CI's; test data
			// (fuzz corpora, captures) is not source.
			if rel != "." && (strings.HasPrefix(d.Name(), ".") && rel != ".ci" || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !licensed(rel) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lines := strings.SplitN(string(b), "\n", headerLines+1)
		if len(lines) > headerLines {
			lines = lines[:headerLines]
		}
		checked++
		if !strings.Contains(strings.Join(lines, "\n"), spdx) {
			t.Errorf("%s: no %q in its first %d lines", rel, spdx, headerLines)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("only %d source files found from %s: is root the repository?", checked, root)
	}
	t.Logf("%d source files carry the SPDX line", checked)
}

// TestLicensesAgree checks that COPYING, debian/copyright and the spec say
// the same (GPL-2.0-or-later), and that debian/copyright names the license
// of every Go module go.mod requires, since the binaries embed them.
func TestLicensesAgree(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	copying := read("COPYING")
	if !strings.Contains(copying, "GNU GENERAL PUBLIC LICENSE") || !strings.Contains(copying, "Version 2, June 1991") {
		t.Errorf("COPYING is not the GPL version 2")
	}
	cr := read("debian/copyright")
	if !regexp.MustCompile(`(?m)^Files: \*\nCopyright: .+\nLicense: GPL-2\+$`).MatchString(cr) {
		t.Errorf("debian/copyright: Files: * is not License: GPL-2+ (DEP-5's name for GPL-2.0-or-later)")
	}
	if !strings.Contains(cr, "(at your option) any later version") {
		t.Errorf("debian/copyright: the GPL-2+ text lacks \"or any later version\"")
	}
	spec := read("rpm/xpra-proxy.spec")
	m := regexp.MustCompile(`(?m)^License:\s+(.+)$`).FindAllStringSubmatch(spec, -1)
	if len(m) == 0 {
		t.Fatal("rpm/xpra-proxy.spec has no License:")
	}
	// The source package's own license first; the modules' after it.
	specLicenses := map[string]bool{}
	for _, l := range m {
		ids := strings.Split(l[1], " AND ")
		if strings.TrimSpace(ids[0]) != "GPL-2.0-or-later" {
			t.Errorf("rpm/xpra-proxy.spec: License: %s does not start with GPL-2.0-or-later", l[1])
		}
		for _, id := range ids {
			specLicenses[strings.TrimSpace(id)] = true
		}
	}
	// debian/copyright's short names for the modules' licenses, as SPDX.
	dep5 := map[string]string{"Apache-2.0": "Apache-2.0", "BSD-2-clause": "BSD-2-Clause", "BSD-3-clause": "BSD-3-Clause", "Expat (MIT)": "MIT"}
	for short, id := range dep5 {
		if strings.Contains(cr, "  "+short+":") && !specLicenses[id] {
			t.Errorf("debian/copyright lists modules under %s, the spec's License: lacks %s", short, id)
		}
	}
	// Every required module, direct or indirect, is named.
	gomod := read("go.mod")
	mods := regexp.MustCompile(`(?m)^\s*(?:require\s+)?([a-z0-9.-]+\.[a-z]+/[^\s]+)\s+v[^\s]+`).FindAllStringSubmatch(gomod, -1)
	if len(mods) < 10 {
		t.Fatalf("go.mod: %d modules found", len(mods))
	}
	flat := strings.Join(strings.Fields(cr), " ")
	for _, mod := range mods {
		name := mod[1]
		short := name
		// debian/copyright abbreviates kernel.org's long path.
		if strings.HasPrefix(name, "kernel.org/") {
			short = name[strings.LastIndex(name, "/libcap/"):]
		}
		if !strings.Contains(flat, short) {
			t.Errorf("debian/copyright does not name the license of %s (go.mod requires it)", name)
		}
	}
}
