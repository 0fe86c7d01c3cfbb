// SPDX-License-Identifier: GPL-2.0-or-later

// Package buildlab builds the module's own programs for tests: once per
// test process for each set of packages, with the go of the toolchain
// running the tests, into a directory every user may read (the programs
// are run by, or drop to, other users).
package buildlab

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Step is one go build into the directory: its packages ("./cmd/...")
// and the environment it adds (e.g. "CGO_ENABLED=0").
type Step struct {
	Env  []string
	Pkgs []string
}

type build struct {
	once sync.Once
	dir  string
	err  error
}

var (
	mu     sync.Mutex
	builds = map[string]*build{}
)

// Dir runs the steps, in order, into one fresh directory the first time a
// test process asks for them, and returns that directory; later calls with
// the same steps return it (or the same build error) at once.
func Dir(t testing.TB, steps ...Step) string {
	t.Helper()
	key := fmt.Sprintf("%q", steps)
	mu.Lock()
	b := builds[key]
	if b == nil {
		b = &build{}
		builds[key] = b
	}
	mu.Unlock()
	b.once.Do(func() { b.dir, b.err = run(steps) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.dir
}

// Program builds one package on its own and returns the program's path.
func Program(t testing.TB, pkg string) string {
	t.Helper()
	return filepath.Join(Dir(t, Step{Pkgs: []string{pkg}}), path.Base(pkg))
}

func run(steps []Step) (string, error) {
	dir, err := os.MkdirTemp("", "xpra-proxy-bin-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	root := moduleRoot()
	for _, s := range steps {
		cmd := exec.Command(goBin, append([]string{"build", "-o", dir + "/"}, s.Pkgs...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), s.Env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s (%s): %w\n%s", strings.Join(s.Pkgs, " "), strings.Join(s.Env, " "), err, out)
		}
	}
	return dir, nil
}

// moduleRoot is the nearest directory up from the test's own (go test
// runs it in its package's directory) that holds go.mod.
func moduleRoot() string {
	wd, _ := os.Getwd()
	for dir := wd; dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
	}
	return wd
}
