// SPDX-License-Identifier: GPL-2.0-or-later

package authhelper

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestClip(t *testing.T) {
	for _, c := range []struct {
		in, want string
		n        int
	}{
		{"plain", "plain", 10},
		{"  spaced \n", "spaced", 10},
		{"a\x01b\x1bc", "a b c", 10},
		{"\xff\xfe", "\uFFFD", 10}, // a run of bad bytes is one mark
		{"ééé", "é", 3},            // never cut inside a rune
		{"abcdef", "abc", 3},
		{"", "", 0},
	} {
		if got := Clip(c.in, c.n); got != c.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ends [2]*Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "end")
		c, err := NewConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ends[i] = c
	}
	return ends[0], ends[1]
}

func TestSendRecv(t *testing.T) {
	a, b := pair(t)
	if err := a.Send(map[string]string{"k": "<v>"}, 64); err != nil {
		t.Fatal(err)
	}
	got, err := b.Recv(64)
	if err != nil || string(got) != `{"k":"<v>"}` {
		t.Fatalf("got %q %v", got, err)
	}
	if err := a.Send(strings.Repeat("x", 100), 64); err == nil {
		t.Fatal("sent a message over its limit")
	}
}

func TestRecvBounds(t *testing.T) {
	for _, c := range []struct {
		name string
		send []byte
	}{
		{"one over the limit", bytes.Repeat([]byte("x"), 65)},
		{"far over the limit", bytes.Repeat([]byte("x"), 4096)},
		{"empty datagram", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := pair(t)
			if _, err := a.Write(c.send); err != nil {
				t.Fatal(err)
			}
			if got, err := b.Recv(64); err == nil {
				t.Fatalf("accepted %d bytes", len(got))
			}
		})
	}
	a, b := pair(t)
	a.Close()
	if _, err := b.Recv(64); err == nil {
		t.Fatal("a closed end gave a message")
	}
}

func TestCheckProgram(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, path, want string
	}{
		{"good", write("good", 0o755), ""},
		{"relative", "helper", "not absolute"},
		{"missing", filepath.Join(dir, "missing"), "helper program"},
		{"directory", dir, "not a regular file"},
		{"not executable", write("noexec", 0o644), "not executable"},
		{"group writable", write("gw", 0o775), "writable by group or others"},
		{"world writable", write("ww", 0o757), "writable by group or others"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckProgram(c.path)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("CheckProgram(%s) = %v, want %q", c.path, err, c.want)
			}
		})
	}
}
