// SPDX-License-Identifier: GPL-2.0-or-later

package ldapcheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/xpra-proxy/xpra-proxy/ldapauth"
)

// These tests play the directory's side over a socketpair, for what a real
// slapd will not do (lie, send too much); e2e/TestLDAP runs the real one.

// serverCert is a certificate for 127.0.0.1 and its PEM, as cacert.
func serverCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dir"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// result is an LDAPResult of the given application tag and code.
func result(id int64, tag ber.Tag, code int64) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	r := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "")
	r.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, ""))
	r.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	r.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	p.AppendChild(r)
	return p
}

// entry is a SearchResultEntry with single-valued attributes.
func entry(id int64, dn string, attrs map[string]string) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	e := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 4, nil, "")
	e.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, ""))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	for k, v := range attrs {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, k, ""))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
		set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, ""))
		a.AppendChild(set)
		list.AppendChild(a)
	}
	e.AppendChild(list)
	p.AppendChild(e)
	return p
}

// directory answers each request by its application tag: bind (0) with
// bindCode, search (3) with what search returns then searchResultDone;
// unbind (2) ends it. raw, when set, is written instead of the bind's
// answer.
type directory struct {
	bindCode   int64
	searchCode int64 // of searchResultDone
	search     func(id int64, base string) []*ber.Packet
	raw        []byte
	binds      []string // the DNs bound as
}

func (d *directory) serve(t *testing.T, c net.Conn) {
	defer c.Close()
	for {
		req, err := ber.ReadPacket(c)
		if err != nil || len(req.Children) < 2 {
			return
		}
		id, _ := req.Children[0].Value.(int64)
		op := req.Children[1]
		switch op.Tag {
		case 0:
			if len(op.Children) > 1 {
				dn, _ := op.Children[1].Value.(string)
				d.binds = append(d.binds, dn)
			}
			if d.raw != nil {
				c.Write(d.raw)
				continue
			}
			c.Write(result(id, 1, d.bindCode).Bytes())
		case 3:
			base, _ := op.Children[0].Value.(string)
			for _, p := range d.search(id, base) {
				c.Write(p.Bytes())
			}
			c.Write(result(id, 5, d.searchCode).Bytes())
		default:
			return
		}
	}
}

func run(t *testing.T, d *directory, r ldapauth.Request, wrongName bool) ldapauth.Reply {
	t.Helper()
	cert, pool := serverCert(t)
	a, b := net.Pipe()
	go func() {
		s := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}})
		if s.Handshake() != nil {
			s.Close()
			return
		}
		d.serve(t, s)
	}()
	if wrongName {
		r.ServerName = "ldap.example.org"
	}
	return Check(context.Background(), a, r, pool)
}

func request() ldapauth.Request {
	return ldapauth.Request{TLS: ldapauth.TLSLDAPS, ServerName: "127.0.0.1", BindDN: "uid=alice,ou=people,dc=example,dc=org",
		Password: []byte("pw"), Username: "alice", TimeoutMS: 5000}
}

func TestCheck(t *testing.T) {
	group := "cn=xpra,ou=groups,dc=example,dc=org"
	ids := func(uid, gid string) func(int64, string) []*ber.Packet {
		return func(id int64, base string) []*ber.Packet {
			if base == group {
				return []*ber.Packet{entry(id, group, nil)}
			}
			return []*ber.Packet{entry(id, base, map[string]string{"uidNumber": uid, "gidNumber": gid})}
		}
	}
	none := func(int64, string) []*ber.Packet { return nil }
	for _, c := range []struct {
		name      string
		dir       *directory
		edit      func(*ldapauth.Request)
		wrongName bool
		ok        bool
		reason    string
		log       string
		uid       int64
	}{
		{"bind", &directory{}, nil, false, true, "", "bound as", -1},
		{"bind, group and ids", &directory{search: ids("1001", "1002")},
			func(r *ldapauth.Request) { r.GroupDN, r.WantIDs = group, true }, false, true, "", "", 1001},
		{"wrong password", &directory{bindCode: 49}, nil, false, false, ldapauth.ReasonFailed, "invalid credentials", -1},
		{"not in the group", &directory{search: none},
			func(r *ldapauth.Request) { r.GroupDN = group }, false, false, ldapauth.ReasonFailed, "is not a member", -1},
		{"no such group", &directory{search: none, searchCode: 32},
			func(r *ldapauth.Request) { r.GroupDN = group }, false, false, ldapauth.ReasonFailed, "is not a member", -1},
		{"no uidNumber", &directory{search: func(id int64, base string) []*ber.Packet {
			return []*ber.Packet{entry(id, base, map[string]string{"gidNumber": "5"})}
		}}, func(r *ldapauth.Request) { r.WantIDs = true }, false, false, ldapauth.ReasonFailed, "uidNumber", -1},
		{"uidNumber not a number", &directory{search: ids("0x10", "5")},
			func(r *ldapauth.Request) { r.WantIDs = true }, false, false, ldapauth.ReasonFailed, "is not a uid", -1},
		{"uidNumber out of range", &directory{search: ids("4294967295", "5")},
			func(r *ldapauth.Request) { r.WantIDs = true }, false, false, ldapauth.ReasonFailed, "is not a uid", -1},
		{"busy directory", &directory{bindCode: 51}, nil, false, false, ldapauth.ReasonUnavailable, "Busy", -1},
		{"group search refused", &directory{search: none, searchCode: 50},
			func(r *ldapauth.Request) { r.GroupDN = group }, false, false, ldapauth.ReasonUnavailable, "Insufficient Access", -1},
		{"certificate for another name", &directory{}, nil, true, false, ldapauth.ReasonUnavailable, "certificate", -1},
		// A BER header announcing 1 GiB: refused by the decoder's budget,
		// not allocated.
		{"huge packet", &directory{raw: []byte{0x30, 0x84, 0x40, 0x00, 0x00, 0x00}}, nil, false, false, ldapauth.ReasonUnavailable, "greater than maximum", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := request()
			if c.edit != nil {
				c.edit(&r)
			}
			rep := run(t, c.dir, r, c.wrongName)
			if rep.OK != c.ok || rep.Reason != c.reason || !strings.Contains(rep.Log, c.log) || rep.UID != c.uid {
				t.Fatalf("reply %+v, want ok=%v reason %q log ~%q uid %d", rep, c.ok, c.reason, c.log, c.uid)
			}
			if err := rep.Check(); err != nil {
				t.Fatalf("the reply would be refused by the supervisor: %v", err)
			}
			if !c.wrongName && (len(c.dir.binds) == 0 || c.dir.binds[0] != r.BindDN) {
				t.Fatalf("bound as %q, want %q", c.dir.binds, r.BindDN)
			}
			if c.wrongName && len(c.dir.binds) > 0 {
				t.Fatal("the password went to a directory whose certificate was not checked")
			}
		})
	}
}

// TestNoRoots: with neither cacert nor the system's roots there is no
// check to make, so nothing is sent.
func TestNoRoots(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	rep := Check(context.Background(), a, request(), nil)
	if rep.OK || rep.Reason != ldapauth.ReasonUnavailable {
		t.Fatalf("reply %+v", rep)
	}
}
