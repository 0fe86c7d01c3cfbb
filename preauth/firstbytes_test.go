// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestAwaitFirstBytes: data or a hang-up end the wait at once and leave
// the bytes to be read; silence ends it at the deadline.
func TestAwaitFirstBytes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		name    string
		client  func(c net.Conn)
		timeout bool
	}{
		{"data", func(c net.Conn) { c.Write([]byte("PX")) }, false},
		{"data later", func(c net.Conn) { time.Sleep(100 * time.Millisecond); c.Write([]byte("PX")) }, false},
		{"hang-up", func(c net.Conn) { c.Close() }, false},
		{"silence", func(net.Conn) {}, true},
	} {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		go tc.client(c)
		start := time.Now()
		err = AwaitFirstBytes(s, start.Add(time.Second))
		took := time.Since(start)
		switch {
		case tc.timeout && !errors.Is(err, os.ErrDeadlineExceeded):
			t.Errorf("%s: %v after %v, want the deadline", tc.name, err, took)
		case tc.timeout && took < 900*time.Millisecond:
			t.Errorf("%s: gave up after %v, before the deadline", tc.name, took)
		case !tc.timeout && (err != nil || took > 900*time.Millisecond):
			t.Errorf("%s: %v after %v", tc.name, err, took)
		}
		if tc.name == "data" || tc.name == "data later" {
			b := make([]byte, 2)
			if _, err := io.ReadFull(s, b); err != nil || string(b) != "PX" {
				t.Errorf("%s: read %q, %v after the wait: the bytes must stay", tc.name, b, err)
			}
		}
		c.Close()
		s.Close()
	}
}
