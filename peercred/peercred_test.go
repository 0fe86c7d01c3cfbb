// SPDX-License-Identifier: GPL-2.0-or-later

package peercred

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestOf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, conn := range map[string]net.Conn{"server side": s, "client side": c} {
		cred, err := Of(conn)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if int(cred.Pid) != os.Getpid() || int(cred.Uid) != os.Geteuid() || int(cred.Gid) != os.Getegid() {
			t.Errorf("%s: got pid %d uid %d gid %d, want %d %d %d", name, cred.Pid, cred.Uid, cred.Gid, os.Getpid(), os.Geteuid(), os.Getegid())
		}
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	tc, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := Of(tc); err == nil {
		t.Error("a TCP connection has no peer credentials, but Of returned some")
	}
}
