// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// TestControlSocketSquatted: a :proxy socket (or symlink) that root does
// not own stops start-up instead of being talked to or followed.
func TestControlSocketSquatted(t *testing.T) {
	testenv.Root(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil { // as /run/xpra, 1775 root:xpra
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "host-proxy")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Lchown(sock, testenv.Nobody, testenv.Nobody); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link-proxy")
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, testenv.Nobody, testenv.Nobody); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{sock, link} {
		var sq *squatted
		if _, err := listenControl(path); !errors.As(err, &sq) || sq.uid != testenv.Nobody {
			t.Fatalf("%s: %v, want a squatted error naming uid %d", path, err, testenv.Nobody)
		}
	}
	s := &Supervisor{cfg: Config{ControlSocket: sock}}
	if _, _, err := s.openControl(); err == nil {
		t.Fatal("openControl went on with a squatted socket")
	}
}

// TestControlSocketRacesSymlinks: root sets up its control socket 1,000
// times in a directory others may write to (sticky, as /run/xpra) while
// an unprivileged user keeps planting a symlink at its path to a
// root-owned 0600 file: that file keeps its owner and mode.
func TestControlSocketRacesSymlinks(t *testing.T) {
	testenv.Root(t)
	base := testenv.SharedTempDir(t)
	target := filepath.Join(base, "root-only")
	if err := os.WriteFile(target, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "run-xpra")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	before := testenv.StatOwnerMode(t, target)
	path := filepath.Join(dir, "host-proxy")
	stop := testenv.SymlinkSwapper(t, path, target)
	testenv.WaitPlanted(t, path)
	bound, squats := 0, 0
	for range 1000 {
		l, err := listenControl(path)
		var sq *squatted
		if errors.As(err, &sq) {
			squats++
		}
		if err != nil {
			continue // squatted, or the name taken at bind: refused either way
		}
		bound++
		if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("bound, but %s is %v (%v)", path, fi, err)
		}
		l.Close()
		os.Remove(path)
	}
	stop()
	if after := testenv.StatOwnerMode(t, target); after != before {
		t.Fatalf("the root-owned file went from %+v to %+v", before, after)
	}
	t.Logf("bound %d of 1000 times against the swapper, %d squats seen", bound, squats)
}
