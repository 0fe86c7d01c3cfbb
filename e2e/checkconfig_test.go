// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
)

// TestCheckConfig runs `xpra-proxy --check-config` (sshd -t) as the unit's
// ExecStartPre would: usable settings exit 0; each broken one exits
// non-zero naming the key or the file at fault.
func TestCheckConfig(t *testing.T) {
	bin := filepath.Join(proxylab.Build(t), "xpra-proxy")
	proxylab.EnsurePreauthUser(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "users.sdb")
	if out, err := exec.Command(bin, "auth", "sqlite", db, "create").CombinedOutput(); err != nil {
		t.Fatalf("creating %s: %v\n%s", db, err, out)
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", "bind-tcp = [\"127.0.0.1:0\"]\ntcp-auth = [\"sqlite,filename="+db+"\"]\n")
	typo := write("typo.toml", "bind-tcp = [\"127.0.0.1:0\"]\ntcp-auht = [\"none\"]\n")
	notPEM := write("cert.pem", "not a certificate\n")
	ca, _ := testCert(t, t.TempDir())
	// A DN in the config file: a TOML literal string, the DN in double
	// quotes for the module's own option syntax.
	ldapGood := write("ldap.toml", "bind-tcp = [\"127.0.0.1:0\"]\n"+
		"tcp-auth = ['ldap,host=ldap.example.org,cacert="+ca+",username-format=\"uid=%username,ou=people,dc=example,dc=org\",require-group=\"cn=xpra,ou=groups,dc=example,dc=org\"']\n")
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
		want []string // in the output
	}{
		{"usable", []string{"--config=" + good}, true, []string{"configuration OK"}},
		{"sshd's -t", []string{"-t", "--config=" + good}, true, []string{"configuration OK"}},
		{"unknown key", []string{"--config=" + typo}, false, []string{typo, "tcp-auht"}},
		{"missing database", []string{"--bind-tcp=127.0.0.1:0", "--tcp-auth=sqlite,filename=" + filepath.Join(dir, "nope.sdb")}, false, []string{"nope.sdb"}},
		{"unknown module", []string{"--bind-tcp=127.0.0.1:0", "--tcp-auth=bogus"}, false, []string{"bogus"}},
		{"bad certificate", []string{"--config=" + good, "--ssl-cert=" + notPEM}, false, []string{"ssl-cert", notPEM}},
		{"ldap", []string{"--config=" + ldapGood}, true, []string{"configuration OK"}},
		{"ldap bad cacert", []string{"--bind-tcp=127.0.0.1:0", "--tcp-auth=ldap,host=127.0.0.1,cacert=" + notPEM}, false, []string{"tcp-auth", "cacert", notPEM}},
		{"ldap missing cacert", []string{"--bind-tcp=127.0.0.1:0", "--tcp-auth=ldap,host=127.0.0.1,cacert=" + filepath.Join(dir, "none.pem")}, false, []string{"cacert", "none.pem"}},
		{"ldap bad host", []string{"--bind-tcp=127.0.0.1:0", "--tcp-auth=ldap,host=ldap.example.org:636"}, false, []string{"tcp-auth", "host", "ldap.example.org:636"}},
		{"ldap in the clear", []string{"--bind-tcp=127.0.0.1:0", "--tcp-auth=ldap,host=127.0.0.1,tls=0"}, false, []string{"tls=0", "starttls"}},
		{"bad number", []string{"--config=" + good, "--max-relays-per-user=-3"}, false, []string{"max-relays-per-user"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(bin, append([]string{"--check-config"}, tc.args...)...).CombinedOutput()
			if (err == nil) != tc.ok {
				t.Fatalf("exit %v, want ok=%v:\n%s", err, tc.ok, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestHelpAndVersion: --help goes to stdout and exits 0 listing the
// subcommands and options without sentinel defaults; --version answers.
func TestHelpAndVersion(t *testing.T) {
	bin := filepath.Join(proxylab.Build(t), "xpra-proxy")
	out, err := exec.Command(bin, "--help").Output()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, w := range []string{"auth sqlite", "list", "sessions", "terminate", "--check-config", "-max-relays-per-user"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("--help does not list %q:\n%s", w, out)
		}
	}
	if strings.Contains(string(out), "(default -1)") {
		t.Errorf("--help shows a sentinel default:\n%s", out)
	}
	out, err = exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "xpra-proxy ") {
		t.Fatalf("--version: %v %q", err, out)
	}
	// A user named "help" is data, not a request for help.
	db := filepath.Join(t.TempDir(), "u.sdb")
	if out, err := exec.Command(bin, "auth", "sqlite", db, "create").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "auth", "sqlite", db, "add", "help", "pw", "nobody", "nogroup", "tcp://127.0.0.1:10100/").CombinedOutput(); err != nil || strings.Contains(string(out), "Usage:") {
		t.Fatalf("adding a user named help: %v\n%s", err, out)
	}
}
