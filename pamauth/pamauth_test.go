// SPDX-License-Identifier: GPL-2.0-or-later

package pamauth

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
)

func goodRequest() Request {
	return Request{Service: DefaultService, Username: "alice", Password: []byte("s3cret"), RHost: "192.0.2.7"}
}

func TestRequestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Request)
		ok   bool
	}{
		{"good", func(*Request) {}, true},
		{"binary password", func(r *Request) { r.Password = []byte{0xff, 0xfe, 'x'} }, true},
		{"longest password", func(r *Request) { r.Password = bytes.Repeat([]byte("p"), MaxPassword) }, true},
		{"longest username", func(r *Request) { r.Username = strings.Repeat("u", MaxUsername) }, true},
		{"service with dots", func(r *Request) { r.Service = "xpra-proxy.test_1" }, true},
		{"no service", func(r *Request) { r.Service = "" }, false},
		{"service path", func(r *Request) { r.Service = "../shadow" }, false},
		{"service slash", func(r *Request) { r.Service = "a/b" }, false},
		{"hidden service", func(r *Request) { r.Service = ".x" }, false},
		{"long service", func(r *Request) { r.Service = strings.Repeat("s", MaxService+1) }, false},
		{"no username", func(r *Request) { r.Username = "" }, false},
		{"long username", func(r *Request) { r.Username = strings.Repeat("u", MaxUsername+1) }, false},
		{"username NUL", func(r *Request) { r.Username = "root\x00alice" }, false},
		{"username newline", func(r *Request) { r.Username = "alice\nforged log line" }, false},
		{"username bad UTF-8", func(r *Request) { r.Username = "al\xffice" }, false},
		{"empty password", func(r *Request) { r.Password = nil }, false},
		{"long password", func(r *Request) { r.Password = bytes.Repeat([]byte("p"), MaxPassword+1) }, false},
		{"password NUL", func(r *Request) { r.Password = []byte("abc\x00def") }, false},
		{"rhost control", func(r *Request) { r.RHost = "host\r" }, false},
		{"long rhost", func(r *Request) { r.RHost = strings.Repeat("h", MaxRHost+1) }, false},
		{"tty control", func(r *Request) { r.TTY = "\x1b[2J" }, false},
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
			if err != nil || got.Username != r.Username || !bytes.Equal(got.Password, r.Password) {
				t.Fatalf("round trip: %+v %v", got, err)
			}
		})
	}
}

func TestParseReply(t *testing.T) {
	for _, c := range []struct {
		name, in string
		ok       bool
	}{
		{"success", `{"ok":true,"user":"alice","uid":1000,"gid":1000,"home":"/home/alice"}`, true},
		{"failure", `{"ok":false,"reason":"authentication failed","log":"pam_authenticate: Authentication failure"}`, true},
		{"largest ids", `{"ok":true,"user":"a","uid":4294967294,"gid":4294967294}`, true},
		{"empty", ``, false},
		{"garbage", `\x00\x01garbage`, false},
		{"not an object", `[1,2,3]`, false},
		{"truncated", `{"ok":true,"user":"al`, false},
		{"two documents", `{"ok":false,"reason":"x"}{"ok":true,"user":"root","uid":0,"gid":0}`, false},
		{"trailing garbage", `{"ok":false,"reason":"x"} xyz`, false},
		{"unknown field", `{"ok":true,"user":"alice","uid":1,"gid":1,"admin":true}`, false},
		{"ok without user", `{"ok":true,"uid":1000,"gid":1000}`, false},
		{"ok with reason", `{"ok":true,"user":"a","uid":1,"gid":1,"reason":"account expired"}`, false},
		{"failure without reason", `{"ok":false}`, false},
		{"negative uid", `{"ok":true,"user":"a","uid":-1,"gid":1}`, false},
		{"uid -1 as unsigned", `{"ok":true,"user":"a","uid":4294967295,"gid":1}`, false},
		{"huge gid", `{"ok":true,"user":"a","uid":1,"gid":99999999999999}`, false},
		{"float uid", `{"ok":true,"user":"a","uid":1.5,"gid":1}`, false},
		{"string uid", `{"ok":true,"user":"a","uid":"0","gid":1}`, false},
		{"user with newline", `{"ok":true,"user":"a\nb","uid":1,"gid":1}`, false},
		{"home with NUL", `{"ok":true,"user":"a","uid":1,"gid":1,"home":"/h\u0000x"}`, false},
		{"long reason", `{"ok":false,"reason":"` + strings.Repeat("r", MaxReason+1) + `"}`, false},
		{"over the size limit", `{"ok":false,"reason":"x","log":"` + strings.Repeat(" ", MaxReply) + `"}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseReply([]byte(c.in))
			if (err == nil) != c.ok {
				t.Fatalf("ParseReply(%.60q) = %v, want ok=%v", c.in, err, c.ok)
			}
		})
	}
}

func TestClip(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"Password: ", 100, "Password:"},
		{"line one\nline two\r\n", 100, "line one line two"},
		{"\x1b[31mred", 100, "[31mred"},
		{"bad \xff byte", 100, "bad \uFFFD byte"},
		{"héllo", 2, "h"}, // never cuts a rune in half
		{"abc", 0, ""},
	} {
		if got := Clip(c.in, c.n); got != c.want || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// pair is a connected SOCK_SEQPACKET pair, as Helper.Run makes.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pam")
		c, err := NewConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

func TestExchange(t *testing.T) {
	sup, helper := pair(t)
	req := goodRequest()
	req.Password = []byte{0x80, 'x', 0xff} // not UTF-8: must arrive unchanged
	if err := sup.SendRequest(req); err != nil {
		t.Fatal(err)
	}
	got, err := helper.RecvRequest()
	if err != nil || !bytes.Equal(got.Password, req.Password) || got.Username != req.Username || got.RHost != req.RHost {
		t.Fatalf("request %+v %v", got, err)
	}
	// What PAM modules say is clipped to fit, whatever its size or bytes.
	long := strings.Repeat("<\"é\\\x01", MaxLog)
	if err := helper.SendReply(Reply{Reason: ReasonRefused + ": " + long, Log: long}); err != nil {
		t.Fatal(err)
	}
	rep, err := sup.RecvReply()
	if err != nil || rep.OK || !strings.HasPrefix(rep.Reason, ReasonRefused+": <\"é\\ <") || len(rep.Reason) > MaxReason {
		t.Fatalf("reply %.80q %v", rep.Reason, err)
	}
	// A reply that would claim success without an account is refused at
	// the sending end already.
	if err := helper.SendReply(Reply{OK: true}); err == nil {
		t.Fatal("sent an ok reply without a user")
	}
}

func TestRecvBounds(t *testing.T) {
	for _, c := range []struct {
		name string
		send []byte
	}{
		{"oversized datagram", bytes.Repeat([]byte("x"), MaxReply+10)},
		{"garbage", []byte("\x00\xffnot json")},
		{"empty datagram", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			sup, helper := pair(t)
			if _, err := helper.c.Write(c.send); err != nil {
				t.Fatal(err)
			}
			if rep, err := sup.RecvReply(); err == nil {
				t.Fatalf("accepted %+v", rep)
			}
		})
	}
	t.Run("closed", func(t *testing.T) {
		sup, helper := pair(t)
		helper.Close()
		if rep, err := sup.RecvReply(); err == nil {
			t.Fatalf("accepted %+v", rep)
		}
	})
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		`{"ok":true,"user":"alice","uid":1000,"gid":1000,"home":"/home/alice"}`,
		`{"ok":false,"reason":"account expired: Your account has expired","log":"pam_acct_mgmt"}`,
		`{"ok":true,"user":"a","uid":4294967295,"gid":1}`,
		`{"ok":false,"reason":"x"}{}`, `[]`, `null`, `{"ok":1e999}`,
	} {
		f.Add([]byte(s))
	}
	// encoding/json builds its caches for Reply on first use: not per input.
	ParseReply([]byte(`{"ok":false,"reason":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Whatever the input's size: more than MaxReply is refused unread.
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
			if r.OK && (r.User == "" || r.UID < 0 || r.UID > MaxID || r.GID < 0 || r.GID > MaxID) {
				t.Fatalf("accepted %+v", r)
			}
		})
	})
}
