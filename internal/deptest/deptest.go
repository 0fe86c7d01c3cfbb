// SPDX-License-Identifier: GPL-2.0-or-later

// Package deptest keeps each binary's dependencies to what its process
// needs (ARCHITECTURE.md, "What each binary links"): a test per command
// lists the packages its process must not depend on, each with the
// reason, and Check fails when `go list -deps` finds one. Where a library
// we use links a forbidden package for code we never call, the rule names
// that library as the only importer allowed, and Check also fails once the
// allowance is no longer needed, so the table always says exactly how
// things are.
package deptest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Rule is one forbidden package.
type Rule struct {
	// Pkg is an import path; the packages under it are forbidden too. A
	// trailing "/" forbids only what is under it ("compress/").
	Pkg string
	// Reason says why the process must not have it.
	Reason string
	// Via are the only packages allowed to import Pkg (libraries that
	// link it for code we never call), each with why. Imports between
	// packages that Pkg matches are not checked.
	Via map[string]string
}

func (r Rule) matches(pkg string) bool {
	if strings.HasSuffix(r.Pkg, "/") {
		return strings.HasPrefix(pkg, r.Pkg)
	}
	return pkg == r.Pkg || strings.HasPrefix(pkg, r.Pkg+"/")
}

// Check fails t for each violation of rules by the main package cmd
// ("./cmd/xpra-proxy", relative to the module root).
func Check(t *testing.T, cmd string, rules []Rule) {
	t.Helper()
	graph, err := Imports(cmd)
	if err != nil {
		t.Fatal(err)
	}
	// A graph this small means go list did not see the program.
	if len(graph) < 20 {
		t.Fatalf("go list gave %d packages for %s", len(graph), cmd)
	}
	for _, v := range Violations(graph, rules) {
		t.Error(v)
	}
}

// Imports is the import graph of cmd and everything it depends on:
// package -> the packages it imports.
func Imports(cmd string) (map[string][]string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	c := exec.Command(goBin, "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, cmd)
	c.Dir = root
	out, err := c.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("go list -deps %s: %w\n%s", cmd, err, stderr)
	}
	graph := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			graph[f[0]] = f[1:]
		}
	}
	return graph, nil
}

// Violations lists, for an import graph, each import a rule forbids and
// each allowance (Via) nothing uses any more.
func Violations(graph map[string][]string, rules []Rule) []string {
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	var out []string
	for _, r := range rules {
		used := map[string]bool{}
		for _, p := range pkgs {
			if r.matches(p) {
				continue
			}
			for _, imp := range graph[p] {
				if !r.matches(imp) {
					continue
				}
				if _, ok := r.Via[p]; ok {
					used[p] = true
					continue
				}
				out = append(out, fmt.Sprintf("%s imports %s, which is forbidden: %s", p, imp, r.Reason))
			}
		}
		for via := range r.Via {
			if !used[via] {
				out = append(out, fmt.Sprintf("%s is allowed to import %s but no longer does: drop the allowance", via, r.Pkg))
			}
		}
	}
	slices.Sort(out)
	return out
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
