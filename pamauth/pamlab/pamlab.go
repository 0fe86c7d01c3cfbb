// SPDX-License-Identifier: GPL-2.0-or-later

// Package pamlab sets up real PAM for tests, as root: the helper binary,
// throwaway system users with known passwords, PAM service files under
// /etc/pam.d and a nologin file, each removed (or restored) when the test
// ends. Nothing here stands in for PAM: tests run Linux-PAM's own modules.
package pamlab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/buildlab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// Debian 12's common-auth and common-account, as /etc/pam.d/xpra-proxy
// includes them (pam_cap left out: it only matters for sessions).
const (
	CommonAuth = `auth	[success=1 default=ignore]	pam_unix.so nullok
auth	requisite	pam_deny.so
auth	required	pam_permit.so
`
	CommonAccount = `account	[success=1 new_authtok_reqd=done default=ignore]	pam_unix.so
account	requisite	pam_deny.so
account	required	pam_permit.so
`
)

// Helper builds xpra-proxy-pam once per test binary into a root-owned
// directory and returns its path.
func Helper(t testing.TB) string {
	t.Helper()
	testenv.Root(t)
	if _, err := os.Stat("/usr/include/security/pam_appl.h"); err != nil {
		testenv.Missing(t, "libpam0g-dev (PAM headers to build xpra-proxy-pam)")
	}
	return buildlab.Program(t, "./cmd/xpra-proxy-pam")
}

func randomName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func run(t testing.TB, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(testenv.Command(t, name), args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// User creates a system user with password (no home, no login shell),
// deleted when the test ends.
func User(t testing.TB, password string) *user.User {
	t.Helper()
	testenv.Root(t)
	name := randomName("xpt-pam-")
	run(t, "", "useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name)
	t.Cleanup(func() {
		if out, err := exec.Command(testenv.Command(t, "userdel"), name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	run(t, name+":"+password+"\n", "chpasswd")
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Modify runs an account tool (chage, usermod) on the user.
func Modify(t testing.TB, tool string, args ...string) {
	t.Helper()
	run(t, "", tool, args...)
}

// Service installs /etc/pam.d/NAME with stack and returns NAME; the file
// is removed when the test ends.
func Service(t testing.TB, stack string) string {
	t.Helper()
	testenv.Root(t)
	name := randomName("xpra-proxy-test-")
	path := filepath.Join("/etc/pam.d", name)
	if err := os.WriteFile(path, []byte("# written by an xpra-proxy test; removed when it ends\n"+stack), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil {
			t.Errorf("removing %s: %v", path, err)
		}
	})
	return name
}

// nologinMu keeps tests of one binary from sharing the nologin file.
var nologinMu sync.Mutex

// Nologin makes pam_nologin refuse non-root logins until the test ends,
// and returns the message it will show. An existing nologin file is used
// as it is; otherwise /etc/nologin is created and removed afterwards.
// Only PAM stacks with pam_nologin care (this machine's login and sshd
// do: keep the test short).
func Nologin(t testing.TB, message string) string {
	t.Helper()
	testenv.Root(t)
	nologinMu.Lock()
	t.Cleanup(nologinMu.Unlock)
	for _, p := range []string{"/var/run/nologin", "/etc/nologin"} {
		if b, err := os.ReadFile(p); err == nil {
			t.Logf("%s exists already; pam_nologin will show its text", p)
			return strings.TrimSpace(string(b))
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile("/etc/nologin", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove("/etc/nologin"); err != nil {
			t.Errorf("removing /etc/nologin: %v", err)
		}
	})
	_, err = f.WriteString(message + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return message
}
