// SPDX-License-Identifier: GPL-2.0-or-later

package pamauth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/pamauth"
	"github.com/xpra-proxy/xpra-proxy/pamauth/pamlab"
)

const password = "correct horse 🐴 battery"

func TestMain(m *testing.M) {
	// As the supervisor does at start-up: what this process inherited must
	// not reach the helper, which refuses to run with an unnamed fd.
	if err := namedfd.CloseOnExecAll(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func ids(t *testing.T, u *user.User) (int64, int64) {
	t.Helper()
	uid, err1 := strconv.ParseInt(u.Uid, 10, 64)
	gid, err2 := strconv.ParseInt(u.Gid, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("ids of %s: %q %q", u.Username, u.Uid, u.Gid)
	}
	return uid, gid
}

// TestPAM runs the real helper against Linux-PAM's pam_unix with Debian's
// common-auth and common-account, for a real account in /etc/shadow.
func TestPAM(t *testing.T) {
	helper := pamauth.Helper{Path: pamlab.Helper(t)}
	if err := pamauth.CheckProgram(helper.Path); err != nil {
		t.Fatal(err)
	}
	common := pamlab.Service(t, pamlab.CommonAuth+pamlab.CommonAccount)
	// As Debian's login: pam_nologin first.
	withNologin := pamlab.Service(t, "auth\trequisite\tpam_nologin.so\n"+pamlab.CommonAuth+pamlab.CommonAccount)
	// PAM_RHOST must reach the modules: this stack admits one address.
	fromOneHost := pamlab.Service(t, pamlab.CommonAuth+"account\trequisite\tpam_succeed_if.so rhost = 192.0.2.7\n"+pamlab.CommonAccount)
	// A second prompt after the password, as a second factor would ask
	// (Linux-PAM's test module pam_stress asks "STRESS Password: "); a
	// banner first.
	twoPrompts := pamlab.Service(t, "auth\toptional\tpam_echo.so Welcome\nauth\trequired\tpam_unix.so\nauth\trequired\tpam_stress.so\n"+pamlab.CommonAccount)
	// The account stack without Debian's pam_deny fallback, so pam_unix's
	// own error reaches the application.
	plainAccount := pamlab.Service(t, pamlab.CommonAuth+"account\trequired\tpam_unix.so\n")

	check := func(t *testing.T, r pamauth.Request) pamauth.Reply {
		t.Helper()
		if r.Password == nil {
			r.Password = []byte(password)
		}
		rep, err := helper.Run(context.Background(), r)
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
		t.Logf("reply: %+v", rep)
		return rep
	}
	refused := func(t *testing.T, rep pamauth.Reply, want string) {
		t.Helper()
		if rep.OK || rep.User != "" || rep.UID != 0 || rep.GID != 0 {
			t.Fatalf("granted %+v", rep)
		}
		if rep.Reason != want && !strings.HasPrefix(rep.Reason, want+": ") {
			t.Fatalf("reason %q, want %q", rep.Reason, want)
		}
	}

	t.Run("right password", func(t *testing.T) {
		u := pamlab.User(t, password)
		uid, gid := ids(t, u)
		rep := check(t, pamauth.Request{Service: common, Username: u.Username, RHost: "127.0.0.1"})
		if !rep.OK || rep.User != u.Username || rep.UID != uid || rep.GID != gid || rep.Home != u.HomeDir || rep.Reason != "" {
			t.Fatalf("got %+v, want %s uid %d gid %d", rep, u.Username, uid, gid)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		u := pamlab.User(t, password)
		rep := check(t, pamauth.Request{Service: common, Username: u.Username, Password: []byte("wrong")})
		refused(t, rep, pamauth.ReasonFailed)
		if rep.Reason != pamauth.ReasonFailed {
			t.Fatalf("reason %q says more than %q", rep.Reason, pamauth.ReasonFailed)
		}
	})
	t.Run("password with a non-UTF-8 byte", func(t *testing.T) {
		u := pamlab.User(t, password)
		rep := check(t, pamauth.Request{Service: common, Username: u.Username, Password: append([]byte(password), 0xff)})
		refused(t, rep, pamauth.ReasonFailed)
	})
	t.Run("unknown user", func(t *testing.T) {
		// Exactly what a wrong password gets: nothing tells a guesser
		// whether the account exists.
		rep := check(t, pamauth.Request{Service: common, Username: "xpt-nobody-here"})
		refused(t, rep, pamauth.ReasonFailed)
		if rep.Reason != pamauth.ReasonFailed {
			t.Fatalf("reason %q says more than %q", rep.Reason, pamauth.ReasonFailed)
		}
	})
	t.Run("locked account", func(t *testing.T) {
		u := pamlab.User(t, password)
		pamlab.Modify(t, "usermod", "--lock", u.Username)
		rep := check(t, pamauth.Request{Service: common, Username: u.Username})
		refused(t, rep, pamauth.ReasonFailed)
	})
	t.Run("expired account", func(t *testing.T) {
		u := pamlab.User(t, password)
		pamlab.Modify(t, "chage", "--expiredate", "0", u.Username)
		rep := check(t, pamauth.Request{Service: plainAccount, Username: u.Username})
		refused(t, rep, pamauth.ReasonExpired)
		// pam_unix's own words come along.
		expiredText := "Your account has expired; please contact your system administrator."
		if rep.Reason != pamauth.ReasonExpired+": "+expiredText || !strings.Contains(rep.Log, "pam_acct_mgmt") {
			t.Fatalf("reply %+v", rep)
		}
		// Debian's common-account turns pam_unix's PAM_ACCT_EXPIRED into
		// pam_deny's PAM_AUTH_ERR; pam_unix's words still tell why.
		rep = check(t, pamauth.Request{Service: common, Username: u.Username})
		if rep.OK || rep.Reason != pamauth.ReasonRefused+": "+expiredText {
			t.Fatalf("with Debian's stack: %+v", rep)
		}
		// A wrong password on an expired account says nothing of it.
		rep = check(t, pamauth.Request{Service: common, Username: u.Username, Password: []byte("wrong")})
		if rep.Reason != pamauth.ReasonFailed {
			t.Fatalf("wrong password on an expired account: %q", rep.Reason)
		}
	})
	t.Run("password change required", func(t *testing.T) {
		u := pamlab.User(t, password)
		pamlab.Modify(t, "chage", "--lastday", "0", u.Username)
		rep := check(t, pamauth.Request{Service: common, Username: u.Username})
		refused(t, rep, pamauth.ReasonPasswordChange)
	})
	t.Run("rhost", func(t *testing.T) {
		u := pamlab.User(t, password)
		rep := check(t, pamauth.Request{Service: fromOneHost, Username: u.Username, RHost: "192.0.2.7"})
		if !rep.OK {
			t.Fatalf("refused from the admitted host: %+v", rep)
		}
		rep = check(t, pamauth.Request{Service: fromOneHost, Username: u.Username, RHost: "198.51.100.1"})
		refused(t, rep, pamauth.ReasonRefused)
	})
	t.Run("more than a password", func(t *testing.T) {
		u := pamlab.User(t, password)
		rep := check(t, pamauth.Request{Service: twoPrompts, Username: u.Username})
		refused(t, rep, pamauth.ReasonMorePrompts)
		if rep.Reason != pamauth.ReasonMorePrompts+": STRESS Password:" {
			t.Fatalf("reason %q should quote the prompt", rep.Reason)
		}
	})
	t.Run("nologin", func(t *testing.T) {
		u := pamlab.User(t, password)
		msg := pamlab.Nologin(t, "Down for maintenance until 17:00.")
		rep := check(t, pamauth.Request{Service: withNologin, Username: u.Username})
		refused(t, rep, pamauth.ReasonNologin)
		if rep.Reason != pamauth.ReasonNologin+": "+msg {
			t.Fatalf("reason %q, want the nologin text %q", rep.Reason, msg)
		}
		// A stack without pam_nologin does not care.
		if rep := check(t, pamauth.Request{Service: common, Username: u.Username}); !rep.OK {
			t.Fatalf("common stack refused: %+v", rep)
		}
	})
	t.Run("unknown service", func(t *testing.T) {
		// Linux-PAM falls back to /etc/pam.d/other, Debian's common stacks.
		u := pamlab.User(t, password)
		rep := check(t, pamauth.Request{Service: "xpra-proxy-test-none", Username: u.Username, Password: []byte("wrong")})
		refused(t, rep, pamauth.ReasonFailed)
	})
	t.Run("concurrent", func(t *testing.T) {
		u := pamlab.User(t, password)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Go(func() {
				pw, want := password, true
				if i%2 == 1 {
					pw, want = fmt.Sprintf("wrong-%d", i), false
				}
				rep, err := helper.Run(context.Background(), pamauth.Request{Service: common, Username: u.Username, Password: []byte(pw)})
				if err != nil || rep.OK != want {
					errs <- fmt.Errorf("attempt %d: ok=%v want %v (%v)", i, rep.OK, want, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestTimeout: a PAM stack that hangs (a module waiting on a dead LDAP
// server, here pam_exec running sleep) is killed at the timeout, with
// everything it started.
func TestTimeout(t *testing.T) {
	helper := pamauth.Helper{Path: pamlab.Helper(t), Timeout: time.Second}
	marker := "37.4242"
	hang := pamlab.Service(t, "auth\trequired\tpam_exec.so /bin/sleep "+marker+"\n"+pamlab.CommonAccount)
	u := pamlab.User(t, password)
	start := time.Now()
	rep, err := helper.Run(context.Background(), pamauth.Request{Service: hang, Username: u.Username, Password: []byte(password)})
	if !errors.Is(err, pamauth.ErrTimeout) || rep.OK {
		t.Fatalf("got %+v, %v; want ErrTimeout", rep, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s with a 1s timeout", d)
	}
	// The sleep pam_exec started is gone too (killed with the group).
	deadline := time.Now().Add(2 * time.Second)
	for {
		left := findProcess(marker)
		if left == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %s", left)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The caller's context ends it too.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	helper.Timeout = time.Minute
	start = time.Now()
	if rep, err := helper.Run(ctx, pamauth.Request{Service: hang, Username: u.Username, Password: []byte(password)}); err == nil || rep.OK {
		t.Fatalf("got %+v, %v after the context ended", rep, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s after the context ended", d)
	}
}

func findProcess(arg string) string {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), arg) {
			return p + ": " + strings.ReplaceAll(string(b), "\x00", " ")
		}
	}
	return ""
}

// TestHelperFailures: no helper, or one that does not answer, is an
// error, never an answer.
func TestHelperFailures(t *testing.T) {
	req := pamauth.Request{Service: pamauth.DefaultService, Username: "alice", Password: []byte("x")}
	for _, c := range []struct{ name, path string }{
		{"missing", "/nonexistent/xpra-proxy-pam"},
		{"exits without answering", "/bin/true"},
		{"fails", "/bin/false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep, err := pamauth.Helper{Path: c.path, Timeout: 5 * time.Second}.Run(context.Background(), req)
			if err == nil || rep.OK {
				t.Fatalf("got %+v, %v", rep, err)
			}
			t.Log(err)
		})
	}
	t.Run("invalid request", func(t *testing.T) {
		bad := req
		bad.Password = []byte("a\x00b")
		if _, err := (pamauth.Helper{Path: "/bin/true"}).Run(context.Background(), bad); err == nil {
			t.Fatal("sent a password with a NUL")
		}
	})
}

func TestCheckProgram(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		path string
		ok   bool
	}{
		{"good", write("good", 0o755), true},
		{"relative", "xpra-proxy-pam", false},
		{"missing", filepath.Join(dir, "none"), false},
		{"directory", dir, false},
		{"not executable", write("noexec", 0o644), false},
		{"group writable", write("gw", 0o775), false},
		{"world writable", write("ww", 0o757), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := pamauth.CheckProgram(c.path); (err == nil) != c.ok {
				t.Fatalf("CheckProgram(%s) = %v, want ok=%v", c.path, err, c.ok)
			}
		})
	}
	if os.Geteuid() == 0 {
		p := write("other", 0o755)
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := pamauth.CheckProgram(p); err == nil {
			t.Fatal("accepted a helper owned by nobody")
		}
	}
}
