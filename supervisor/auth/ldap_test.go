// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/ldapauth"
)

// caFile writes a self-signed CA certificate with the given mode.
func caFile(t *testing.T, mode os.FileMode) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// helperUser is an existing non-root account for the helper's identity.
func helperUser(t *testing.T) (string, int) {
	t.Helper()
	for _, name := range []string{ldapauth.DefaultUser, "daemon", "nobody"} {
		if u, err := user.Lookup(name); err == nil && u.Uid != "0" {
			uid, _ := strconv.Atoi(u.Uid)
			return name, uid
		}
	}
	t.Skip("no non-root system user to run the helper as")
	return "", 0
}

func TestLDAPOptions(t *testing.T) {
	prog := fakeProgram(t)
	name, uid := helperUser(t)
	ca := caFile(t, 0o644)
	writable := caFile(t, 0o666)
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)
	type want struct {
		host, tls, dn, group string
		port                 int
		latin1, ids, allow   bool
		timeout              time.Duration
	}
	def := want{host: "localhost", tls: ldapauth.TLSLDAPS, port: 636, dn: "cn=alice, o=example.org", timeout: ldapauth.DefaultTimeout}
	with := func(f func(*want)) *want { w := def; f(&w); return &w }
	for _, c := range []struct {
		spec string
		want *want // nil: refused
	}{
		{"ldap", &def},
		{"ldap,tls=1", &def}, // xpra's spelling of LDAPS
		{"ldap,tls=ldaps,port=1636,host=127.0.0.1", with(func(w *want) { w.port, w.host = 1636, "127.0.0.1" })},
		{"ldap,tls=starttls", with(func(w *want) { w.tls, w.port = ldapauth.TLSStartTLS, 389 })},
		{"ldap,tls=starttls,port=10389", with(func(w *want) { w.tls, w.port = ldapauth.TLSStartTLS, 10389 })},
		{`ldap,username-format="uid=%username,ou=people,dc=example,dc=org"`, with(func(w *want) { w.dn = "uid=alice,ou=people,dc=example,dc=org" })},
		{`ldap:username_format="uid=%username,ou=people,dc=%domain",domain=test`, with(func(w *want) { w.dn = "uid=alice,ou=people,dc=test" })},
		{"ldap,username-format=%username@corp.example", nil}, // not a DN
		{"ldap,username-format=cn=admin", nil}, // names no user
		{`ldap,require-group="cn=xpra,ou=groups,dc=example,dc=org"`, with(func(w *want) { w.group = "cn=xpra,ou=groups,dc=example,dc=org" })},
		{"ldap,require-group=xpra", nil},
		{"ldap,require-group=", nil},
		{"ldap,ids=directory", with(func(w *want) { w.ids = true })},
		{"ldap,ids=passwd", &def},
		{"ldap,ids=ldap", nil},
		{"ldap,encoding=latin-1", with(func(w *want) { w.latin1 = true })},
		{"ldap,encoding=utf8", &def},
		{"ldap,encoding=utf-16", nil},
		{"ldap,cacert=" + ca, &def},
		{"ldap,cacert=" + writable, nil},
		{"ldap,cacert=" + notPEM, nil},
		{"ldap,cacert=/nonexistent/ca.pem", nil},
		{"ldap,timeout=3", with(func(w *want) { w.timeout = 3 * time.Second })},
		{"ldap,timeout=1h", nil},
		{"ldap,allow-unencrypted-passwords=yes", with(func(w *want) { w.allow = true })},
		{"ldap,tls=0", nil}, // plain LDAP would carry the password in the clear
		{"ldap,tls=no", nil},
		{"ldap,tls=maybe", nil},
		{"ldap,port=0", nil},
		{"ldap,port=65536", nil},
		{"ldap,host=", nil},
		{"ldap,host=a/b", nil},
		{"ldap,host=ldap.example.org:636", nil}, // the port has its own option
		{"ldap,bind-password=x", nil},           // unknown: a typo must not pass silently
		{"ldap,user=root", nil},
		{"ldap,user=no-such-user-here", nil},
		{"ldap,helper=relative/xpra-proxy-ldap", nil},
		{"ldap,helper=/nonexistent/xpra-proxy-ldap", nil},
	} {
		t.Run(c.spec, func(t *testing.T) {
			text := c.spec
			if !strings.Contains(text, "helper=") {
				text += ",helper=" + prog
			}
			if !strings.Contains(text, "user=") {
				text += ",user=" + name
			}
			if !strings.Contains(text, "domain=") {
				text += ",domain=example.org"
			}
			spec, err := ParseSpec(text)
			if err != nil {
				t.Fatal(err)
			}
			mod, err := New(spec, Config{})
			if (err == nil) != (c.want != nil) {
				t.Fatalf("New(%q) = %v, want ok=%v", text, err, c.want != nil)
			}
			if err != nil {
				t.Log(err)
				return
			}
			m := mod.(*ldapModule)
			got := want{host: m.host, tls: m.tls, port: m.port, dn: m.BindDN("alice"), group: m.groupDN,
				latin1: m.latin1, ids: m.idsFromDirectory, allow: m.allowUnencrypted, timeout: m.timeout}
			if got != *c.want {
				t.Fatalf("got  %+v\nwant %+v", got, *c.want)
			}
			if _, ok := mod.(PlainPassword); !ok || !m.NeedsChallenge() || m.Name() != "ldap" {
				t.Fatal("ldap must ask for the plain password")
			}
		})
	}
	t.Run("never the pre-auth user", func(t *testing.T) {
		spec, _ := ParseSpec("ldap,helper=" + prog + ",user=" + name)
		if _, err := New(spec, Config{HelperForbiddenUIDs: []int{uid}}); err == nil {
			t.Fatal("a helper user that is the pre-auth user was accepted")
		}
	})
}

func TestLDAPTransport(t *testing.T) {
	prog := fakeProgram(t)
	name, _ := helperUser(t)
	for _, c := range []struct {
		opts         string
		confidential bool
		ok           bool
	}{
		{"", true, true},
		{"", false, false},
		{",allow-unencrypted-passwords=yes", false, true},
	} {
		spec, _ := ParseSpec("ldap,helper=" + prog + ",user=" + name + c.opts)
		m, err := New(spec, Config{})
		if err != nil {
			t.Fatal(err)
		}
		err = m.(PlainPassword).CheckTransport(c.confidential)
		if (err == nil) != c.ok {
			t.Errorf("%q confidential=%v: %v, want ok=%v", c.opts, c.confidential, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "encrypted connection") {
			t.Errorf("refusal %q does not say why", err)
		}
	}
}

func TestEscapeDNValue(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"alice", "alice"},
		{"alice.smith@corp", "alice.smith@corp"},
		{"a,b", `a\,b`},
		{"x+y=z", `x\+y\=z`},
		{`q"uote\`, `q\"uote\\`},
		{"#lead", `\#lead`},
		{" pad ", `\ pad\ `},
		{"<;>", `\<\;\>`},
		{"nul\x00", `nul\00`},
	} {
		if got := escapeDNValue(c.in); got != c.want {
			t.Errorf("escapeDNValue(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestLDAPEncoding(t *testing.T) {
	for _, c := range []struct {
		latin1 bool
		in     string
		want   string // "" : refused
	}{
		{false, "pässword", "pässword"},
		{false, "p\xe4ssword", "pässword"}, // a latin-1 client's bytes, re-encoded
		{true, "pässword", "p\xe4ssword"},
		{true, "p\xe4ssword", "p\xe4ssword"},
		{true, "€uro", ""}, // latin-1 has no euro sign
	} {
		m := &ldapModule{latin1: c.latin1}
		got, err := m.encode([]byte(c.in))
		if c.want == "" {
			if err == nil {
				t.Errorf("latin1=%v %q: encoded as %q", c.latin1, c.in, got)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("latin1=%v %q: %q %v, want %q", c.latin1, c.in, got, err, c.want)
		}
	}
}

func TestParseSpecQuoted(t *testing.T) {
	for _, c := range []struct {
		in   string
		want map[string]string // nil: refused
	}{
		{`ldap,a=1,b=2`, map[string]string{"a": "1", "b": "2"}},
		{`ldap,dn="cn=x,dc=y",b=2`, map[string]string{"dn": "cn=x,dc=y", "b": "2"}},
		{`ldap:b=2,dn="cn=x,dc=y"`, map[string]string{"dn": "cn=x,dc=y", "b": "2"}},
		{`ldap,dn="plain"`, map[string]string{"dn": "plain"}},
		{`ldap,dn=""`, map[string]string{"dn": ""}},
		{`ldap,dn=x"y,b=2`, map[string]string{"dn": `x"y`, "b": "2"}}, // a quote inside a value is kept
		{`ldap,dn="cn=x,dc=y`, nil},
		{`ldap,dn="cn=x"junk,b=2`, nil},
		{`ldap,dn="a",`, nil},
		{`ldap,a=1,`, nil},
		{`ldap,,a=1`, nil},
	} {
		spec, err := ParseSpec(c.in)
		if c.want == nil {
			if err == nil {
				t.Errorf("ParseSpec(%q) = %v, want an error", c.in, spec.Options)
			}
			continue
		}
		if err != nil || len(spec.Options) != len(c.want) {
			t.Errorf("ParseSpec(%q) = %v %v, want %v", c.in, spec.Options, err, c.want)
			continue
		}
		for k, v := range c.want {
			if spec.Options[k] != v {
				t.Errorf("ParseSpec(%q)[%s] = %q, want %q", c.in, k, spec.Options[k], v)
			}
		}
	}
}
