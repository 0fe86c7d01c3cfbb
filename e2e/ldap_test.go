// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// The throwaway directory's layout.
const (
	ldapSuffix   = "dc=example,dc=org"
	ldapPeople   = "ou=people," + ldapSuffix
	ldapGroup    = "cn=xpra,ou=groups," + ldapSuffix
	ldapPassword = "Ldap-pass-1" // xpra 3.1.3 does not unquote URL passwords: a plain one
)

// slapd is a real OpenLDAP server started for one test.
type slapd struct {
	LDAPS, LDAP int    // loopback ports: LDAPS and plain LDAP (for StartTLS)
	CACert      string // its certificate, self-signed: the CA to trust
	cmd         *exec.Cmd
	log         *proxylab.Buffer
}

// startSlapd starts Debian's slapd, as root, on two loopback ports with a
// config, a database and a certificate of its own in a temporary
// directory, loaded with the entries in ldif (slapadd, before it starts).
func startSlapd(t *testing.T, ldif string) *slapd {
	t.Helper()
	bin := testenv.Command(t, "slapd")
	slapadd := testenv.Command(t, "slapadd")
	dir := t.TempDir()
	cert, key := testCert(t, dir) // for 127.0.0.1
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
TLSCertificateFile %[2]s
TLSCertificateKeyFile %[3]s
database mdb
maxsize 10485760
suffix "%[4]s"
rootdn "cn=admin,%[4]s"
directory %[1]s/db
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
`, dir, cert, key, ldapSuffix)
	confFile := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ldifFile := filepath.Join(dir, "data.ldif")
	if err := os.WriteFile(ldifFile, []byte(ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(slapadd, "-f", confFile, "-l", ldifFile).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v: %s", err, out)
	}
	s := &slapd{LDAPS: xpralab.FreePort(t), LDAP: xpralab.FreePort(t), CACert: cert, log: &proxylab.Buffer{}}
	// -d 0: in the foreground, logging nothing but errors.
	s.cmd = exec.Command(bin, "-f", confFile, "-d", "0",
		"-h", fmt.Sprintf("ldaps://127.0.0.1:%d/ ldap://127.0.0.1:%d/", s.LDAPS, s.LDAP))
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGCONT)
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	for _, port := range []int{s.LDAPS, s.LDAP} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("slapd is not listening on %d: %v\n%s", port, err, s.log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return s
}

// ldapEntries: the test user (uidNumber and gidNumber as in passwd) in the
// group, bob outside it, and rooty in it, whose entry says uidNumber 0.
func ldapEntries(name string, uid, gid int) string {
	return fmt.Sprintf(`dn: %[1]s
objectClass: dcObject
objectClass: organization
o: example
dc: example

dn: %[2]s
objectClass: organizationalUnit
ou: people

dn: ou=groups,%[1]s
objectClass: organizationalUnit
ou: groups

dn: uid=%[3]s,%[2]s
objectClass: inetOrgPerson
objectClass: posixAccount
uid: %[3]s
cn: Test User
sn: User
uidNumber: %[4]d
gidNumber: %[5]d
homeDirectory: /nonexistent
userPassword: %[6]s

dn: uid=bob,%[2]s
objectClass: inetOrgPerson
objectClass: posixAccount
uid: bob
cn: Bob
sn: Outside
uidNumber: %[4]d
gidNumber: %[5]d
homeDirectory: /nonexistent
userPassword: %[6]s

dn: uid=rooty,%[2]s
objectClass: inetOrgPerson
objectClass: posixAccount
uid: rooty
cn: Rooty
sn: Zero
uidNumber: 0
gidNumber: 0
homeDirectory: /root
userPassword: %[6]s

dn: %[7]s
objectClass: posixGroup
cn: xpra
gidNumber: 5000
memberUid: %[3]s
memberUid: rooty
`, ldapSuffix, ldapPeople, name, uid, gid, ldapPassword, ldapGroup)
}

// TestLDAP: a real OpenLDAP directory checks the passwords. A directory
// user attaches with the real xpra client over TLS and gets a relay as its
// uid (from the directory's uidNumber); a wrong password, an unknown user
// and a user outside the required group get "authentication failed"; plain
// TCP is refused before any password is asked; StartTLS works too, and a
// directory whose certificate does not chain to cacert is never sent a
// password. The helper, seen in /proc while the directory is held, runs as
// its own user, sandboxed, with only its two named descriptors.
func TestLDAP(t *testing.T) {
	xpralab.Require(t)
	srv := xpralab.Start(t, xpralab.Options{Args: []string{"--session-name=lab-ldap"}})
	name := srv.User.Username
	dir := startSlapd(t, ldapEntries(name, srv.UID, srv.GID))
	cert, key := testCert(t, t.TempDir())
	otherCA, _ := testCert(t, t.TempDir()) // another key: not the directory's

	format := `username-format="uid=%username,` + ldapPeople + `"`
	module := fmt.Sprintf(`ldap,host=127.0.0.1,port=%d,cacert=%s,%s,require-group="%s",ids=directory,timeout=20`,
		dir.LDAPS, dir.CACert, format, ldapGroup)
	// Penalties off: the subtests fail logins on purpose from one address.
	p := proxylab.Start(t, "--tcp-auth="+module, "--ssl-cert="+cert, "--ssl-key="+key, "--per-source-penalty=0")
	sslURL := func(user, password, display string) string {
		return fmt.Sprintf("ssl://%s:%s@%s/%s", user, password, p.Addr(), display)
	}
	noVerify := "--ssl-server-verify-mode=none"

	t.Run("attach over TLS as the directory's uid", func(t *testing.T) {
		a := startAttach(t, sslURL(name, ldapPassword, srv.Display), noVerify)
		defer a.stop()
		groups, _ := srv.User.GroupIds()
		worker := findWorker(t, p.Pid(), "--relay")
		proclab.CheckConfined(t, worker, srv.UID, srv.GID, groups)
		time.Sleep(2 * time.Second)
		if a.disconnected() {
			t.Fatalf("the attached client was disconnected:\n%s", a.out)
		}
		if !strings.Contains(p.Logs(), "module=ldap") {
			t.Fatalf("not granted by the ldap module:\n%s", p.Logs())
		}
	})
	for _, c := range []struct{ name, user, password, log string }{
		{"wrong password", name, "Wrong-pass-1", "invalid credentials"},
		{"unknown user", "nosuchuser", ldapPassword, "invalid credentials"},
		{"user outside the group", "bob", ldapPassword, "is not a member of"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := xpraClient(t, 40*time.Second, "info", sslURL(c.user, c.password, ""), noVerify)
			if !strings.Contains(out, "authentication failed") || strings.Contains(out, "server.type") {
				t.Fatalf("xpra info:\n%s", out)
			}
			// The reason is logged for this user (the log quotes the
			// reason, escaping its quotes), not shown to the client.
			logged := false
			for _, line := range strings.Split(p.Logs(), "\n") {
				if strings.Contains(line, "authentication failed") && (strings.Contains(line, `user "`+c.user+`"`) || strings.Contains(line, `user \"`+c.user+`\"`)) && strings.Contains(line, c.log) {
					logged = true
				}
			}
			if !logged || strings.Contains(out, c.log) {
				t.Fatalf("want %q logged for %s and not shown to the client:\n%s\nclient:\n%s", c.log, c.user, p.Logs(), out)
			}
		})
	}
	t.Run("the account policy still decides", func(t *testing.T) {
		// The directory's word on the uid is checked like any module's:
		// uidNumber 0 is never a relay as root.
		out := xpraClient(t, 40*time.Second, "info", sslURL("rooty", ldapPassword, ""), noVerify)
		if !strings.Contains(out, "authentication failed") || strings.Contains(out, "server.type") {
			t.Fatalf("xpra info as a directory user with uidNumber 0:\n%s", out)
		}
		if !strings.Contains(p.Logs(), "never as root") {
			t.Fatalf("the policy's refusal is not logged:\n%s", p.Logs())
		}
		// And deny-users holds for a user the directory accepts.
		q := proxylab.Start(t, "--tcp-auth="+module, "--ssl-cert="+cert, "--ssl-key="+key, "--per-source-penalty=0", "--deny-users="+name)
		out = xpraClient(t, 40*time.Second, "info", fmt.Sprintf("ssl://%s:%s@%s/", name, ldapPassword, q.Addr()), noVerify)
		if !strings.Contains(out, "authentication failed") || strings.Contains(out, "server.type") {
			t.Fatalf("xpra info as a user in deny-users:\n%s", out)
		}
		if !strings.Contains(q.Logs(), "deny-users") {
			t.Fatalf("deny-users is not named in the log:\n%s", q.Logs())
		}
	})
	t.Run("plain TCP is refused", func(t *testing.T) {
		out := xpraClient(t, 30*time.Second, "info", fmt.Sprintf("tcp://%s:%s@%s/", name, ldapPassword, p.Addr()))
		if !strings.Contains(out, "encrypted connection") || strings.Contains(out, "server.type") {
			t.Fatalf("xpra info over plain TCP:\n%s", out)
		}
	})
	t.Run("the helper in /proc", func(t *testing.T) {
		// Held by a stopped directory, the helper waits in its TLS
		// handshake, after its sandbox: look at it, then let it finish.
		if err := dir.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		defer func() {
			if !resumed {
				dir.cmd.Process.Signal(syscall.SIGCONT)
			}
		}()
		done := make(chan string, 1)
		go func() { done <- xpraClient(t, 60*time.Second, "info", sslURL(name, ldapPassword, ""), noVerify) }()
		var h proclab.Proc
		deadline := time.Now().Add(30 * time.Second)
		for {
			if hs := childrenIn(p.Pid(), "--ldap"); len(hs) == 1 && hs[0].Status["Seccomp"] == "2" {
				h = proclab.Read(hs[0].PID)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no sandboxed xpra-proxy-ldap child of %d", p.Pid())
			}
			time.Sleep(20 * time.Millisecond)
		}
		u, err := user.Lookup(proxylab.LDAPUser)
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if uid == 0 || uid == lookupUID(t, proxylab.PreauthUser) || uid == lookupUID(t, proxylab.ControlUser) {
			t.Fatalf("the ldap user's uid %d is root's, the pre-auth user's or the control user's", uid)
		}
		proclab.CheckConfined(t, h, uid, gid, nil)
		if h.Status["Seccomp"] != "2" || h.Status["NoNewPrivs"] != "1" {
			t.Errorf("helper %d: Seccomp %q NoNewPrivs %q", h.PID, h.Status["Seccomp"], h.Status["NoNewPrivs"])
		}
		// Exactly its two named descriptors: "ldap" and "directory".
		if n := sockets(h); n != 2 {
			t.Errorf("helper %d holds %d sockets, want 2 (ldap, directory): %v", h.PID, n, h.FDs)
		}
		dir.cmd.Process.Signal(syscall.SIGCONT)
		resumed = true
		if out := <-done; !strings.Contains(out, "server.type=xpra-proxy") {
			t.Fatalf("the login held by the stopped directory did not go through once it resumed:\n%s", out)
		}
	})
	t.Run("StartTLS and ids from passwd", func(t *testing.T) {
		mod := fmt.Sprintf(`ldap,host=127.0.0.1,tls=starttls,port=%d,cacert=%s,%s`, dir.LDAP, dir.CACert, format)
		q := proxylab.Start(t, "--tcp-auth="+mod, "--ssl-cert="+cert, "--ssl-key="+key, "--per-source-penalty=0")
		url := fmt.Sprintf("ssl://%s:%s@%s/", name, ldapPassword, q.Addr())
		if out := xpraClient(t, 40*time.Second, "info", url, noVerify); !strings.Contains(out, "server.type=xpra-proxy") {
			t.Fatalf("xpra info with StartTLS:\n%s", out)
		}
	})
	t.Run("a directory the CA does not vouch for", func(t *testing.T) {
		mod := fmt.Sprintf(`ldap,host=127.0.0.1,port=%d,cacert=%s,%s`, dir.LDAPS, otherCA, format)
		q := proxylab.Start(t, "--tcp-auth="+mod, "--ssl-cert="+cert, "--ssl-key="+key, "--per-source-penalty=0")
		url := fmt.Sprintf("ssl://%s:%s@%s/", name, ldapPassword, q.Addr())
		out := xpraClient(t, 40*time.Second, "info", url, noVerify)
		if !strings.Contains(out, "authentication failed") || strings.Contains(out, "server.type") {
			t.Fatalf("xpra info against an unverified directory:\n%s", out)
		}
		if !strings.Contains(q.Logs(), "certificate") {
			t.Fatalf("the log does not name the certificate check:\n%s", q.Logs())
		}
	})
}
