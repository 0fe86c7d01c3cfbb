// SPDX-License-Identifier: GPL-2.0-or-later

package xpraurl

import (
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"reflect"
	"strings"
	"testing"
)

type parseCase struct {
	in   string
	d    Dialect
	want Target
	err  string // substring of the expected error; "" means success
}

// both expands a row that behaves the same in both dialects except for the
// display spelling.
func both(in string, t Target, v3disp, v6disp string) []parseCase {
	t3, t6 := t, t
	t3.Display, t6.Display = v3disp, v6disp
	return []parseCase{{in: in, d: V3, want: t3}, {in: in, d: V6, want: t6}}
}

// bothErr is a row that fails the same way in both dialects.
func bothErr(in, err string) []parseCase {
	return []parseCase{{in: in, d: V3, err: err}, {in: in, d: V6, err: err}}
}

func cases() []parseCase {
	var cs []parseCase
	add := func(c ...parseCase) { cs = append(cs, c...) }

	// tcp with credentials and display.
	add(both("tcp://alice:secret@host:10000/10",
		Target{Scheme: "tcp", Username: "alice", Password: "secret", HasPassword: true, Host: "host", Port: 10000}, ":10", "10")...)
	// Legacy slash form: 3.1 only.
	add(parseCase{in: "tcp/alice:secret@host:10000/10", d: V3,
		want: Target{Scheme: "tcp", Username: "alice", Password: "secret", HasPassword: true, Host: "host", Port: 10000, Display: ":10"}})
	add(parseCase{in: "tcp/alice:secret@host:10000/10", d: V6, err: "legacy"})
	for _, sc := range []string{"ssl", "ws", "wss"} {
		add(parseCase{in: sc + "/host:1234/", d: V3, want: Target{Scheme: sc, Host: "host", Port: 1234}})
		add(parseCase{in: sc + "/host:1234/", d: V6, err: "legacy"})
	}
	// Legacy colon form: both.
	add(both("tcp:host:10000", Target{Scheme: "tcp", Host: "host", Port: 10000}, "", "")...)
	add(both("ssl:host:10000/7", Target{Scheme: "ssl", Host: "host", Port: 10000}, ":7", "7")...)
	add(bothErr("ssh:host:10", "ssh://")...)

	// Default ports.
	add(parseCase{in: "ssl://host/", d: V3, want: Target{Scheme: "ssl", Host: "host", Port: 14500}})
	add(parseCase{in: "ssl://host/", d: V6, want: Target{Scheme: "ssl", Host: "host", Port: 443}})
	add(parseCase{in: "ws://host", d: V3, want: Target{Scheme: "ws", Host: "host", Port: 14500}})
	add(parseCase{in: "ws://host", d: V6, want: Target{Scheme: "ws", Host: "host", Port: 80}})
	add(parseCase{in: "tcp://host", d: V6, want: Target{Scheme: "tcp", Host: "host", Port: 14500}})
	add(both("ws://host:8080/", Target{Scheme: "ws", Host: "host", Port: 8080}, "", "")...)
	add(parseCase{in: "wss://alice@host/100", d: V3, want: Target{Scheme: "wss", Username: "alice", Host: "host", Port: 14500, Display: ":100"}})
	add(parseCase{in: "wss://alice@host/100", d: V6, want: Target{Scheme: "wss", Username: "alice", Host: "host", Port: 443, Display: "100"}})
	add(both("ssh://user@host:22/10", Target{Scheme: "ssh", Username: "user", Host: "host", Port: 22}, ":10", "10")...)
	add(both("ssh://host/10", Target{Scheme: "ssh", Host: "host", Port: 22}, ":10", "10")...)

	// Sockets.
	sock := Target{Scheme: "socket", SocketPath: "/run/user/1000/xpra/vm-10"}
	add(both("socket:///run/user/1000/xpra/vm-10", sock, "", "")...)
	add(both("/run/user/1000/xpra/vm-10", sock, "", "")...)
	add(both("socket://user:pass@/path", Target{Scheme: "socket", Username: "user", Password: "pass", HasPassword: true, SocketPath: "/path"}, "", "")...)
	add(both("socket:///a@b/c", Target{Scheme: "socket", SocketPath: "/a@b/c"}, "", "")...)
	add(both("socket://u@/a@/b", Target{Scheme: "socket", Username: "u", SocketPath: "/a@/b"}, "", "")...)
	add(bothErr("socket://relative", "absolute")...)

	// vsock.
	add(both("vsock://3:14500", Target{Scheme: "vsock", CID: 3, Port: 14500}, "", "")...)
	add(both("vsock://4294967295:1/5", Target{Scheme: "vsock", CID: 4294967295, Port: 1}, ":5", "5")...)
	for _, in := range []string{"vsock://3", "vsock://x:1", "vsock://4294967296:1", "vsock://:1"} {
		add(bothErr(in, "vsock")...)
	}

	// V6 aliases.
	for alias, canon := range map[string]string{"xpra": "tcp", "xpra+tcp": "tcp", "xpras": "ssl", "xpra+tls": "ssl",
		"xpra+ssl": "ssl", "xpra+ws": "ws", "xpra+wss": "wss", "xpra+ssh": "ssh"} {
		in := alias + "://h:99/1"
		add(parseCase{in: in, d: V6, want: Target{Scheme: canon, Host: "h", Port: 99, Display: "1"}})
		add(parseCase{in: in, d: V3, err: "unknown scheme"})
	}
	add(both("TCP://h:1/", Target{Scheme: "tcp", Host: "h", Port: 1}, "", "")...)

	// Local displays.
	add(both(":10", Target{}, ":10", "10")...)
	add(both("10", Target{}, ":10", "10")...)
	add(both(":10.0", Target{}, ":10", "10")...)
	add(both("0", Target{}, ":0", "0")...)

	// Credentials.
	add(both("tcp://alice:p@ss:w@rd@host/", Target{Scheme: "tcp", Username: "alice", Password: "p@ss:w@rd", HasPassword: true, Host: "host", Port: 14500}, "", "")...)
	add(both("tcp://a%40b:p%3Aq%2F@host/", Target{Scheme: "tcp", Username: "a@b", Password: "p:q/", HasPassword: true, Host: "host", Port: 14500}, "", "")...)
	add(both("tcp://alice:@host/", Target{Scheme: "tcp", Username: "alice", HasPassword: true, Host: "host", Port: 14500}, "", "")...)
	add(both("tcp://:pw@host/", Target{Scheme: "tcp", Password: "pw", HasPassword: true, Host: "host", Port: 14500}, "", "")...)
	add(both("tcp://alice:pa/ss@host/1", Target{Scheme: "tcp", Username: "alice", Password: "pa/ss", HasPassword: true, Host: "host", Port: 14500}, ":1", "1")...)

	// IPv6.
	add(both("tcp://[::1]:14500/", Target{Scheme: "tcp", Host: "::1", Port: 14500}, "", "")...)
	add(both("tcp://u@[fe80::1%eth0]/3", Target{Scheme: "tcp", Username: "u", Host: "fe80::1%eth0", Port: 14500}, ":3", "3")...)

	// Displays in URLs.
	add(both("tcp://h/:10.0", Target{Scheme: "tcp", Host: "h", Port: 14500}, ":10", "10")...)
	add(both("tcp://h/proxy-1", Target{Scheme: "tcp", Host: "h", Port: 14500}, ":proxy-1", "proxy-1")...)
	add(both("tcp://h/:foo", Target{Scheme: "tcp", Host: "h", Port: 14500}, ":foo", ":foo")...)
	// 256 bytes: fine for V6, but V3 adds ':' and so exceeds the limit.
	add(parseCase{in: "tcp://h/" + strings.Repeat("d", 256), d: V3, err: "display longer"})
	add(parseCase{in: "tcp://h/" + strings.Repeat("d", 256), d: V6, want: Target{Scheme: "tcp", Host: "h", Port: 14500, Display: strings.Repeat("d", 256)}})
	add(both("tcp://h/:"+strings.Repeat("d", 255), Target{Scheme: "tcp", Host: "h", Port: 14500}, ":"+strings.Repeat("d", 255), ":"+strings.Repeat("d", 255))...)
	add(bothErr("tcp://h/"+strings.Repeat("d", 257), "display longer")...)

	// Options.
	add(both("tcp://host/?encryption=AES&keyfile=/k", Target{Scheme: "tcp", Host: "host", Port: 14500,
		Options: map[string]string{"encryption": "AES", "keyfile": "/k"}}, "", "")...)
	add(both("tcp://host/5?a=1&a=2&b", Target{Scheme: "tcp", Host: "host", Port: 14500,
		Options: map[string]string{"a": "2", "b": ""}}, ":5", "5")...)
	add(both("tcp://host/?", Target{Scheme: "tcp", Host: "host", Port: 14500}, "", "")...)
	add(both("tcp://u:p@ss@host/?mail=a@b", Target{Scheme: "tcp", Username: "u", Password: "p@ss", HasPassword: true, Host: "host", Port: 14500,
		Options: map[string]string{"mail": "a@b"}}, "", "")...)
	add(both("/run/x?auth=none", Target{Scheme: "socket", SocketPath: "/run/x", Options: map[string]string{"auth": "none"}}, "", "")...)

	// Errors common to both dialects.
	errs := []struct{ in, err string }{
		{"", "empty"},
		{strings.Repeat("a", MaxInputLen+1), "too long"},
		{"tcp://host:0/", "port"},
		{"tcp://host:65536/", "port"},
		{"tcp://host:+80/", "port"},
		{"tcp://host:1e3/", "port"},
		{"tcp://host:/", "empty port"},
		{"tcp://host:123456/", "port"},
		{"tcp://", "needs a host"},
		{"tcp://alice:secret@/10", "needs a host"},
		{"tcp://:10000/", "needs a host"},
		{"tcp://::1:14500/", "brackets"},
		{"tcp://[::1/", "missing ']'"},
		{"tcp://[::1]x/", "after IPv6"},
		{"tcp://[1.2.3.4]/", "not an IPv6"},
		{"tcp://ho st/", "invalid character"},
		{"tcp://host/\x00", "control"},
		{"tcp://host\n/", "control"},
		{"tcp://host/\u0085", "control"},
		{"tcp://host/\xff", "UTF-8"},
		{"udp://host/", `unknown scheme "udp"`},
		{"quic://host/", `unknown scheme "quic"`},
		{"foo:bar", `unknown scheme "foo"`},
		{"[::1]", "unrecognised"},
		{"tcp://host/10/x", "'/'"},
		{"tcp://host/a@b", "user name"},
		{"tcp://a%zz@host/", "user name"},
		{"tcp://a:%zz@host/", "percent"},
		{"tcp://a%00@host/", "control"},
		{"tcp://host/?a=%00", "control"},
		{"tcp://host/?=v", "empty option name"},
		{"tcp://host/?a=1;b=2", "options"},
		{"tcp://host/?" + strings.Repeat("a=1&", MaxOptions) + "z=1", "too many options"},
		{"socket://", "absolute"},
		{"tcp://u:" + strings.Repeat("@", 2000) + "@host/", "once normalised"},
		{"/", "empty socket path"},
		{":", "unrecognised"},
		{":10.x", "unrecognised"},
		{"host", "unrecognised"},
	}
	for _, e := range errs {
		add(bothErr(e.in, e.err)...)
	}
	add(parseCase{in: "tcp://h/", d: Dialect(7), err: "dialect"})
	return cs
}

func TestParse(t *testing.T) {
	for _, c := range cases() {
		name := c.d.String() + " " + c.in
		if len(name) > 80 {
			name = name[:80]
		}
		t.Run(name, func(t *testing.T) {
			got, err := Parse(c.in, c.d)
			if c.err != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error containing %q", c.in, got, c.err)
				}
				if !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Parse(%q) error %q, want it to contain %q", c.in, err, c.err)
				}
				if !strings.HasPrefix(err.Error(), "xpraurl: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", c.in, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Parse(%q)\n got %+v\nwant %+v", c.in, got, c.want)
			}
			// URL() must re-parse to the same target under the same rules.
			u := got.URL()
			again, err := Parse(u, c.d)
			if err != nil {
				t.Fatalf("Parse(URL()=%q): %v", u, err)
			}
			if !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip via %q\n got %+v\nwant %+v", u, again, got)
			}
		})
	}
}

func TestErrorsDoNotLeakPassword(t *testing.T) {
	for _, in := range []string{
		"tcp://alice:hunter2@host:99999/",
		"tcp://alice:hunter2@host:0/",
		"tcp://alice:hunter2@::1/",
		"tcp://alice:hunter2%zz@host/",
		"tcp://alice:hunter2\x01@host/",
		"tcp://alice:hunter2@/",
		"tcp://alice:hunter2",
		"tcp://alice:hunter2:x",
		"alice:hunter2@host",
		"tcp/alice:hunter2@host",
	} {
		_, err := Parse(in, V6)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want error", in)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q) error leaks the password: %v", in, err)
		}
	}
}

func TestStringAndURL(t *testing.T) {
	tests := []struct {
		in       string
		d        Dialect
		str, url string
	}{
		{"tcp://alice:secret@host:10000/10", V3, "tcp://alice:***@host:10000/10", "tcp://alice:secret@host:10000/10"},
		{"tcp://alice:secret@host:10000/10", V6, "tcp://alice:***@host:10000/10", "tcp://alice:secret@host:10000/10"},
		{"tcp://alice:@host/", V3, "tcp://alice:***@host:14500/", "tcp://alice:@host:14500/"},
		{"tcp://alice@host/", V3, "tcp://alice@host:14500/", "tcp://alice@host:14500/"},
		{"tcp://a%40b:p%40ss%2F@[::1]/x", V6, "tcp://a%40b:***@[::1]:14500/x", "tcp://a%40b:p%40ss%2F@[::1]:14500/x"},
		{"ssl://host/", V6, "ssl://host:443/", "ssl://host:443/"},
		{"tcp/alice:sekrit@host:10000/10", V3, "tcp://alice:***@host:10000/10", "tcp://alice:sekrit@host:10000/10"},
		{"xpra+tls://host/proxy", V6, "ssl://host:443/proxy", "ssl://host:443/proxy"},
		{"tcp://h/foo", V3, "tcp://h:14500/:foo", "tcp://h:14500/:foo"},
		{"socket://u:p@/run/x", V3, "socket://u:***@/run/x", "socket://u:p@/run/x"},
		{"/run/x", V3, "socket:///run/x", "socket:///run/x"},
		{"vsock://3:14500/", V3, "vsock://3:14500/", "vsock://3:14500/"},
		{":10.0", V3, ":10", ":10"},
		{":10.0", V6, "10", "10"},
		{"tcp://h/?b=2&a=x+y&password=pw", V6, "tcp://h:14500/?a=x+y&b=2&password=%2A%2A%2A", "tcp://h:14500/?a=x+y&b=2&password=pw"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			tg, err := Parse(tc.in, tc.d)
			if err != nil {
				t.Fatal(err)
			}
			if got := tg.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
			if got := tg.URL(); got != tc.url {
				t.Errorf("URL() = %q, want %q", got, tc.url)
			}
			if tg.HasPassword && tg.Password != "" && strings.Contains(tg.String(), tg.Password) {
				t.Errorf("String() %q shows the password", tg.String())
			}
		})
	}
}

func TestAddress(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"tcp://host:10000/", "host:10000"},
		{"ws://[::1]/", "[::1]:14500"},
		{"ssh://u@host/1", "host:22"},
		{"/run/xpra/x", "/run/xpra/x"},
		{"vsock://3:14500", "3:14500"},
		{":10", ""},
	}
	for _, tc := range tests {
		tg, err := Parse(tc.in, V3)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		if got := tg.Address(); got != tc.want {
			t.Errorf("Parse(%q).Address() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range cases() {
		if len(c.in) <= MaxInputLen {
			f.Add(c.in, c.d == V6)
		}
	}
	f.Fuzz(func(t *testing.T, s string, v6 bool) {
		fuzzcheck.Bounded(t, 1<<20, func() {
			d := V3
			if v6 {
				d = V6
			}
			tg, err := Parse(s, d)
			if err != nil {
				return
			}
			u := tg.URL()
			again, err := Parse(u, d)
			if err != nil {
				t.Fatalf("Parse(%q) ok, but Parse(URL()=%q): %v", s, u, err)
			}
			if !reflect.DeepEqual(again, tg) {
				t.Fatalf("Parse(%q) round trip via %q\n got %+v\nwant %+v", s, u, again, tg)
			}
			_ = tg.String()
			_ = tg.Address()
		})
	})
}
