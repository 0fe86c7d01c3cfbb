// SPDX-License-Identifier: GPL-2.0-or-later

package ldapauth

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
)

func goodRequest() Request {
	return Request{TLS: TLSLDAPS, ServerName: "ldap.example.org", BindDN: "uid=alice,ou=people,dc=example,dc=org",
		Password: []byte("s3cret"), Username: "alice", TimeoutMS: 10000}
}

func TestRequestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Request)
		ok   bool
	}{
		{"good", func(*Request) {}, true},
		{"starttls", func(r *Request) { r.TLS = TLSStartTLS }, true},
		{"with group and ids", func(r *Request) { r.GroupDN = "cn=xpra,ou=groups,dc=example,dc=org"; r.WantIDs = true }, true},
		{"with a CA", func(r *Request) { r.CAPEM = []byte("-----BEGIN CERTIFICATE-----\n...") }, true},
		{"IP server name", func(r *Request) { r.ServerName = "127.0.0.1" }, true},
		{"IPv6 server name", func(r *Request) { r.ServerName = "::1" }, true},
		{"binary password", func(r *Request) { r.Password = []byte{0xff, 0xfe, 'x'} }, true},
		{"longest password", func(r *Request) { r.Password = bytes.Repeat([]byte("p"), MaxPassword) }, true},
		{"plain ldap", func(r *Request) { r.TLS = "" }, false},
		{"tls none", func(r *Request) { r.TLS = "none" }, false},
		{"no server name", func(r *Request) { r.ServerName = "" }, false},
		{"server name with a path", func(r *Request) { r.ServerName = "a/b" }, false},
		{"server name newline", func(r *Request) { r.ServerName = "a\nb" }, false},
		{"CA too big", func(r *Request) { r.CAPEM = make([]byte, MaxCAPEM+1) }, false},
		{"no bind DN", func(r *Request) { r.BindDN = "" }, false},
		{"bind DN NUL", func(r *Request) { r.BindDN = "uid=a\x00,dc=x" }, false},
		{"long bind DN", func(r *Request) { r.BindDN = strings.Repeat("d", MaxDN+1) }, false},
		{"empty password: an unauthenticated bind", func(r *Request) { r.Password = nil }, false},
		{"long password", func(r *Request) { r.Password = bytes.Repeat([]byte("p"), MaxPassword+1) }, false},
		{"no username", func(r *Request) { r.Username = "" }, false},
		{"username control", func(r *Request) { r.Username = "a\x1bb" }, false},
		{"group DN control", func(r *Request) { r.GroupDN = "cn=x\n" }, false},
		{"no timeout", func(r *Request) { r.TimeoutMS = 0 }, false},
		{"timeout too long", func(r *Request) { r.TimeoutMS = MaxTimeoutMS + 1 }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := goodRequest()
			c.edit(&r)
			err := r.Check()
			if (err == nil) != c.ok {
				t.Fatalf("Check() = %v, want ok=%v", err, c.ok)
			}
			if !c.ok {
				return
			}
			b, _ := json.Marshal(r)
			got, err := ParseRequest(b)
			if err != nil || got.BindDN != r.BindDN || !bytes.Equal(got.Password, r.Password) || got.WantIDs != r.WantIDs {
				t.Fatalf("round trip: %+v %v", got, err)
			}
		})
	}
}

func TestParseReply(t *testing.T) {
	for _, c := range []struct {
		name, in string
		ok       bool
		uid      int64
	}{
		{"success without ids", `{"ok":true,"log":"bound"}`, true, -1},
		{"success with ids", `{"ok":true,"uid":1000,"gid":1000}`, true, 1000},
		{"success, ids -1", `{"ok":true,"uid":-1,"gid":-1}`, true, -1},
		{"failure", `{"ok":false,"reason":"authentication failed","log":"invalid credentials"}`, true, -1},
		{"largest ids", `{"ok":true,"uid":4294967294,"gid":4294967294}`, true, 4294967294},
		{"root ids are for the policy to refuse", `{"ok":true,"uid":0,"gid":0}`, true, 0},
		{"empty", ``, false, 0},
		{"garbage", "\x00\x01garbage", false, 0},
		{"not an object", `[1,2,3]`, false, 0},
		{"truncated", `{"ok":true,"uid":10`, false, 0},
		{"two documents", `{"ok":false,"reason":"x"}{"ok":true}`, false, 0},
		{"unknown field", `{"ok":true,"admin":true}`, false, 0},
		{"ok with reason", `{"ok":true,"reason":"authentication failed"}`, false, 0},
		{"failure without reason", `{"ok":false}`, false, 0},
		{"failure with ids", `{"ok":false,"reason":"x","uid":5,"gid":5}`, false, 0},
		{"uid without gid", `{"ok":true,"uid":1000}`, false, 0},
		{"uid below -1", `{"ok":true,"uid":-2,"gid":-2}`, false, 0},
		{"uid -1 as unsigned", `{"ok":true,"uid":4294967295,"gid":1}`, false, 0},
		{"huge gid", `{"ok":true,"uid":1,"gid":99999999999999}`, false, 0},
		{"float uid", `{"ok":true,"uid":1.5,"gid":1}`, false, 0},
		{"string uid", `{"ok":true,"uid":"0","gid":1}`, false, 0},
		{"long log", `{"ok":true,"log":"` + strings.Repeat("l", MaxLog+1) + `"}`, false, 0},
		{"long reason", `{"ok":false,"reason":"` + strings.Repeat("r", MaxReason+1) + `"}`, false, 0},
		{"over the size limit", `{"ok":false,"reason":"x","log":"` + strings.Repeat(" ", MaxReply) + `"}`, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseReply([]byte(c.in))
			if (err == nil) != c.ok {
				t.Fatalf("ParseReply(%.60q) = %v, want ok=%v", c.in, err, c.ok)
			}
			if c.ok && r.UID != c.uid {
				t.Fatalf("uid %d, want %d", r.UID, c.uid)
			}
		})
	}
}

// TestExchange: a request and a reply over a real SOCK_SEQPACKET pair, as
// the supervisor and the helper use it, and a reply over the bound
// refused unread.
func TestExchange(t *testing.T) {
	pair := func(t *testing.T) (*Conn, *Conn) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
		defer a.Close()
		defer b.Close()
		ca, err := NewConn(a)
		if err != nil {
			t.Fatal(err)
		}
		cb, err := NewConn(b)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ca.Close(); cb.Close() })
		return ca, cb
	}
	t.Run("round trip", func(t *testing.T) {
		sup, helper := pair(t)
		req := goodRequest()
		req.CAPEM = bytes.Repeat([]byte("C"), MaxCAPEM) // the largest request fits a datagram
		if err := sup.SendRequest(req); err != nil {
			t.Fatal(err)
		}
		got, err := helper.RecvRequest()
		if err != nil || got.BindDN != req.BindDN || !bytes.Equal(got.CAPEM, req.CAPEM) {
			t.Fatalf("request %+v %v", got.BindDN, err)
		}
		// The directory's text is clipped to fit, control characters gone.
		if err := helper.SendReply(Reply{Reason: ReasonFailed, Log: "x\n" + strings.Repeat("l", 2*MaxLog), UID: -1, GID: -1}); err != nil {
			t.Fatal(err)
		}
		rep, err := sup.RecvReply()
		if err != nil || rep.OK || len(rep.Log) != MaxLog || strings.Contains(rep.Log, "\n") {
			t.Fatalf("reply %v %v", len(rep.Log), err)
		}
	})
	t.Run("oversized reply", func(t *testing.T) {
		sup, helper := pair(t)
		big := `{"ok":false,"reason":"x","log":"` + strings.Repeat("l", MaxReply) + `"}`
		if _, err := helper.c.Write([]byte(big)); err != nil {
			t.Fatal(err)
		}
		if rep, err := sup.RecvReply(); err == nil {
			t.Fatalf("accepted %+v", rep)
		}
	})
	t.Run("closed without a reply", func(t *testing.T) {
		sup, helper := pair(t)
		helper.Close()
		if rep, err := sup.RecvReply(); err == nil {
			t.Fatalf("accepted %+v", rep)
		}
	})
}

// FuzzParseReply: root parses what the helper sends, and the helper parses
// what the directory sends; whatever it says, only a valid reply passes.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		`{"ok":true,"uid":1000,"gid":1000}`, `{"ok":true,"log":"bound as \"uid=a\""}`,
		`{"ok":false,"reason":"authentication failed","log":"invalid credentials"}`,
		`{"ok":true,"uid":4294967295,"gid":1}`, `{"ok":true,"uid":7}`,
		`{"ok":false,"reason":"x"}{}`, `[]`, `null`, `{"ok":1e999}`,
	} {
		f.Add([]byte(s))
	}
	ParseReply([]byte(`{"ok":false,"reason":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzcheck.Bounded(t, 1<<20, func() {
			r, err := ParseReply(b)
			if err != nil {
				return
			}
			if len(b) > MaxReply {
				t.Fatalf("accepted %d bytes", len(b))
			}
			if err := r.Check(); err != nil {
				t.Fatalf("accepted an invalid reply: %v", err)
			}
			if r.UID < -1 || r.UID > MaxID || r.GID < -1 || r.GID > MaxID || (!r.OK && r.UID != -1) {
				t.Fatalf("accepted %+v", r)
			}
		})
	})
}

// FuzzParseRequest: the helper's side; a request that passes is one the
// helper can act on safely.
func FuzzParseRequest(f *testing.F) {
	good, _ := json.Marshal(goodRequest())
	f.Add(good)
	for _, s := range []string{`{}`, `{"tls":"none"}`, `{"tls":"ldaps","server_name":"x","bind_dn":"a=b","password":"","username":"u","timeout_ms":1}`} {
		f.Add([]byte(s))
	}
	ParseRequest(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzcheck.Bounded(t, 1<<20, func() {
			r, err := ParseRequest(b)
			if err != nil {
				return
			}
			if len(r.Password) == 0 || (r.TLS != TLSLDAPS && r.TLS != TLSStartTLS) || r.TimeoutMS <= 0 {
				t.Fatalf("accepted %+v", r)
			}
		})
	})
}
