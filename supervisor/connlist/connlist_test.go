// SPDX-License-Identifier: GPL-2.0-or-later

package connlist

import (
	"bytes"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzReply: root reads a query process's reply (the connection's user
// runs it, so it may print anything) and its stderr, and prints them in
// `xpra-proxy list`. Nothing may panic, the table keeps one row per
// connection, and nothing but printable characters reaches root's
// terminal. The transport stays root's own record.
func FuzzReply(f *testing.F) {
	f.Add([]byte(`{"target":"unix:/run/user/1000/xpra/host-10","bytes_from_client":1200,"bytes_to_client":93530,"control_socket":"/run/user/1000/xpra/host-proxy-4242","transport":"ssl"}`), "")
	f.Add([]byte("{\"target\":\"\\u001b]0;owned\\u0007\\n4242 root\"}"), "")
	f.Add([]byte("not json"), "query: no such relay\n\x1b[2J")
	f.Fuzz(func(t *testing.T, reply []byte, stderr string) {
		c := Conn{Pid: 4242, User: "alice", UID: 1000, Source: "127.0.0.1:4711", Listener: "tcp", Transport: "tcp"}
		if stderr != "" {
			c.Error = strings.TrimSpace(stderr) // as query takes a failed process's stderr
		} else if err := applyReply(&c, reply); err != nil {
			c.Error = "reply: " + err.Error()
		}
		if c.Transport != "tcp" {
			t.Fatalf("the reply changed root's transport to %q", c.Transport)
		}
		var out bytes.Buffer
		Write(&out, []Conn{c})
		if n := strings.Count(out.String(), "\n"); n != 2 {
			t.Fatalf("%d lines for one connection:\n%s", n, out.String())
		}
		for _, r := range strings.ReplaceAll(out.String(), "\n", "") {
			if r == utf8.RuneError || !unicode.IsPrint(r) {
				t.Fatalf("%U reaches the terminal: %q", r, out.String())
			}
		}
	})
}
