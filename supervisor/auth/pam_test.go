// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/pamauth"
	"github.com/xpra-proxy/xpra-proxy/pamauth/pamlab"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
)

// fakeProgram is an executable file that passes CheckProgram, for tests
// that only parse options (it is never run).
func fakeProgram(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "xpra-proxy-pam")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPAMOptions(t *testing.T) {
	prog := fakeProgram(t)
	for _, c := range []struct {
		spec    string
		ok      bool
		service string
		timeout time.Duration
		allow   bool
	}{
		{"pam", true, pamauth.DefaultService, pamauth.DefaultTimeout, false},
		{"pam,service=login", true, "login", pamauth.DefaultTimeout, false},
		{"pam:service=xpra-proxy.test,timeout=3s", true, "xpra-proxy.test", 3 * time.Second, false},
		{"pam,timeout=20", true, pamauth.DefaultService, 20 * time.Second, false},
		{"pam,allow-unencrypted-passwords=yes", true, pamauth.DefaultService, pamauth.DefaultTimeout, true},
		{"pam,allow_unencrypted_passwords=1", true, pamauth.DefaultService, pamauth.DefaultTimeout, true},
		{"pam,allow-unencrypted-passwords=no", true, pamauth.DefaultService, pamauth.DefaultTimeout, false},
		{"pam,check-account=yes", true, pamauth.DefaultService, pamauth.DefaultTimeout, false},
		{"pam,check-account=no", false, "", 0, false},
		{"pam,allow-unencrypted-passwords=maybe", false, "", 0, false},
		{"pam,allow-insecure-xor=yes", false, "", 0, false}, // a typo must not pass silently
		{"pam,service=../shadow", false, "", 0, false},
		{"pam,service=", false, "", 0, false},
		{"pam,timeout=0", false, "", 0, false},
		{"pam,timeout=-1s", false, "", 0, false},
		{"pam,timeout=1h", false, "", 0, false},
		{"pam,timeout=soon", false, "", 0, false},
		{"pam,helper=relative/xpra-proxy-pam", false, "", 0, false},
		{"pam,helper=/nonexistent/xpra-proxy-pam", false, "", 0, false},
	} {
		t.Run(c.spec, func(t *testing.T) {
			text := c.spec
			if !strings.Contains(text, "helper=") {
				text += ",helper=" + prog
			}
			spec, err := ParseSpec(text)
			if err != nil {
				t.Fatal(err)
			}
			mod, err := New(spec, Config{})
			if (err == nil) != c.ok {
				t.Fatalf("New(%q) = %v, want ok=%v", text, err, c.ok)
			}
			if !c.ok {
				t.Log(err)
				return
			}
			m := mod.(*pamModule)
			if m.service != c.service || m.helper.Timeout != c.timeout || m.allowUnencrypted != c.allow || m.helper.Path != prog {
				t.Fatalf("got service %q timeout %s allow %v helper %s", m.service, m.helper.Timeout, m.allowUnencrypted, m.helper.Path)
			}
			if !m.NeedsChallenge() || m.Name() != "pam" {
				t.Fatal("pam must ask for a password")
			}
			if _, ok := mod.(PlainPassword); !ok {
				t.Fatal("pam does not ask for the plain password")
			}
		})
	}
}

func TestPAMTransport(t *testing.T) {
	prog := fakeProgram(t)
	for _, c := range []struct {
		spec      string
		encrypted bool
		ok        bool
	}{
		{"pam", true, true},
		{"pam", false, false},
		{"pam,allow-unencrypted-passwords=yes", false, true},
		{"pam,allow-unencrypted-passwords=yes", true, true},
	} {
		spec, _ := ParseSpec(c.spec + ",helper=" + prog)
		mod, err := New(spec, Config{})
		if err != nil {
			t.Fatal(err)
		}
		err = mod.(PlainPassword).CheckTransport(c.encrypted)
		if (err == nil) != c.ok {
			t.Fatalf("%s encrypted=%v: %v, want ok=%v", c.spec, c.encrypted, err, c.ok)
		}
		var ref *Refusal
		if err != nil && (!errors.As(err, &ref) || !strings.Contains(ref.Detail, "encrypted") || !errors.Is(err, ErrDenied) ||
			!strings.Contains(ref.Log, "allow-unencrypted-passwords=yes")) {
			t.Fatalf("refusal %#v should tell the client why and the admin what to set", err)
		}
	}
}

func TestSystemPassword(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"secret", "secret"},
		{"pässword", "pässword"},     // UTF-8, as xpra 6 and our probe send it
		{"p\xe4ssword", "pässword"},  // latin-1, as xpra 3.1's client sends it
		{"\xff\xfe", "\u00ff\u00fe"}, // any byte is a latin-1 character
		{"🐴", "🐴"},
	} {
		if got := systemPassword([]byte(c.in)); string(got) != c.want {
			t.Errorf("systemPassword(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// xorAnswer does what a client and then the supervisor do with an xor
// challenge: the client masks the password with the combined salt, the
// supervisor unmasks it for PAM.
func xorAnswer(t *testing.T, password string) []byte {
	t.Helper()
	server := digest.NewServerSalt()
	client, err := digest.NewClientSalt("hmac+sha256", len(server))
	if err != nil {
		t.Fatal(err)
	}
	combined, err := digest.CombineSalts("hmac+sha256", client, server)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := digest.Response(digest.XOR, []byte(password), combined)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(resp), password) {
		t.Fatal("the xor answer holds the password in clear")
	}
	return digest.RecoverXorPassword(resp, combined)
}

// TestPAMAuthenticate runs the module against the real helper and
// Linux-PAM, for a throwaway account.
func TestPAMAuthenticate(t *testing.T) {
	helper := pamlab.Helper(t)
	if err := namedfd.CloseOnExecAll(); err != nil { // as the supervisor does at start-up
		t.Fatal(err)
	}
	const password = "pam-module-secret"
	u := pamlab.User(t, password)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	common := pamlab.Service(t, pamlab.CommonAuth+pamlab.CommonAccount)
	plainAccount := pamlab.Service(t, pamlab.CommonAuth+"account\trequired\tpam_unix.so\n")
	module := func(t *testing.T, service string) Module {
		spec, err := ParseSpec("pam,service=" + service + ",helper=" + helper)
		if err != nil {
			t.Fatal(err)
		}
		m, err := New(spec, Config{})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := module(t, common)

	t.Run("right password", func(t *testing.T) {
		sess, err := m.Authenticate(Request{Username: u.Username, Plain: xorAnswer(t, password), RemoteHost: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		if sess.UID != uid || sess.GID != gid || sess.Displays != nil {
			t.Fatalf("session %+v, want uid %d gid %d and the user's live sessions", sess, uid, gid)
		}
	})
	for _, c := range []struct {
		name string
		req  Request
	}{
		{"wrong password", Request{Username: u.Username, Plain: xorAnswer(t, "wrong")}},
		{"unknown user", Request{Username: "xpt-nobody-here", Plain: xorAnswer(t, password)}},
		{"no xor answer", Request{Username: u.Username, Verify: func([]byte) bool { return true }}},
		{"no username", Request{Plain: xorAnswer(t, password)}},
		{"password too long for PAM", Request{Username: u.Username, Plain: []byte(strings.Repeat("x", 600))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sess, err := m.Authenticate(c.req)
			if sess != nil || !errors.Is(err, ErrDenied) {
				t.Fatalf("got %+v, %v; want a denial", sess, err)
			}
			// The client hears "authentication failed" and nothing more.
			var ref *Refusal
			if errors.As(err, &ref) && ref.Detail != "" {
				t.Fatalf("detail %q for the client", ref.Detail)
			}
			t.Log(err)
		})
	}
	t.Run("expired account", func(t *testing.T) {
		u := pamlab.User(t, password)
		pamlab.Modify(t, "chage", "--expiredate", "0", u.Username)
		sess, err := module(t, plainAccount).Authenticate(Request{Username: u.Username, Plain: xorAnswer(t, password)})
		var ref *Refusal
		if sess != nil || !errors.As(err, &ref) || !strings.HasPrefix(ref.Detail, pamauth.ReasonExpired) || !errors.Is(err, ErrDenied) {
			t.Fatalf("got %+v, %v; want the refusal %q", sess, err, pamauth.ReasonExpired)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		hang := pamlab.Service(t, "auth\trequired\tpam_exec.so /bin/sleep 30\n")
		spec, _ := ParseSpec("pam,timeout=1,service=" + hang + ",helper=" + helper)
		m, err := New(spec, Config{})
		if err != nil {
			t.Fatal(err)
		}
		sess, err := m.Authenticate(Request{Username: u.Username, Plain: xorAnswer(t, password)})
		var ref *Refusal
		if sess != nil || !errors.As(err, &ref) || ref.Detail != pamauth.ReasonTimeout {
			t.Fatalf("got %+v, %v; want the refusal %q", sess, err, pamauth.ReasonTimeout)
		}
	})
}
