// SPDX-License-Identifier: GPL-2.0-or-later

package xpraurl

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
)

func TestDial(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lt, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	for _, url := range []string{"socket://" + l.Addr().String(), "tcp://" + lt.Addr().String() + "/"} {
		target, err := Parse(url, V3)
		if err != nil {
			t.Fatal(err)
		}
		c, err := target.Dial(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		c.Close()
	}
	local, _ := Parse(":10", V3)
	if _, err := local.Dial(context.Background()); !errors.Is(err, ErrLocalDisplay) {
		t.Fatalf("local display: %v", err)
	}
	ssh, _ := Parse("ssh://u@h:22/10", V3)
	if _, err := ssh.Dial(context.Background()); err == nil {
		t.Fatal("ssh dialled")
	}
}
