// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

func header(flags, level, index byte, size uint32) []byte {
	h := []byte{'P', flags, level, index, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[4:], size)
	return h
}

// TestHostileInput sends what a scanner or an attacker would: each
// connection ends cleanly (closed, with a disconnect where the stream
// allows one), the supervisor keeps serving, and a real client logs in
// while it happens.
func TestHostileInput(t *testing.T) {
	xpralab.Require(t)
	s := xpralab.Start(t, xpralab.Options{Args: []string{"--session-name=hostile"}})
	// No per-source cap: every input here must reach a pre-auth process
	// (the limits have their own test).
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--login-timeout=3s", "--per-source-max-startups=0")
	good := p.URL(s.User.Username+":secret", s.Display)

	cases := []struct {
		name  string
		send  []byte
		slow  bool   // trickle the bytes, one per 500 ms
		close bool   // half-close after sending
		reply string // how the answer starts; "" means an xpra packet (or nothing)
	}{
		// Not xpra: answered in the protocol it looks like, as the reference does.
		{name: "garbage", send: []byte("hello there\n"), reply: "disconnect: connection failed, "},
		{name: "http", send: []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), reply: "HTTP/1.1 200 OK"},
		{name: "oversized length", send: header(1, 0, 0, 1<<30)},
		{name: "over the pre-auth limit", send: append(header(1, 0, 0, 2<<20), bytes.Repeat([]byte{0xc2}, 1000)...)},
		{name: "truncated hello", send: append(header(1, 0, 0, 100), 0xc2, 0x85), close: true},
		{name: "not a hello", send: append(header(1, 0, 0, 9), 0xc2, 0x84, 'p', 'i', 'n', 'g', 0x3f, 0x03, 0xe8)},
		{name: "hello that is not a dict", send: append(header(1, 0, 0, 8), 0xc2, 0x85, 'h', 'e', 'l', 'l', 'o', 0x05)},
		{name: "bad compression", send: append(header(1, 0x11, 0, 8), 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4)},
		{name: "silent", send: nil},
		{name: "slow sender", send: append(header(1, 0, 0, 50), bytes.Repeat([]byte{0xc2}, 20)...), slow: true},
	}
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Go(func() {
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				return
			}
			defer c.Close()
			if tc.slow {
				go func() {
					for _, b := range tc.send {
						if _, err := c.Write([]byte{b}); err != nil {
							return
						}
						time.Sleep(500 * time.Millisecond)
					}
				}()
			} else if _, err := c.Write(tc.send); err != nil {
				t.Errorf("%s: write: %v", tc.name, err)
			}
			if tc.close {
				c.(*net.TCPConn).CloseWrite()
			}
			// The proxy must close the connection: well within the login
			// timeout (3 s here) plus the 1 s refusal delay.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			reply, err := io.ReadAll(c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("%s: connection still open after 10 s (read %q)", tc.name, reply)
				return
			}
			switch {
			case tc.reply != "" && !bytes.HasPrefix(reply, []byte(tc.reply)):
				t.Errorf("%s: reply %.80q, want it to start with %q", tc.name, reply, tc.reply)
			case tc.reply == "" && len(reply) > 0 && reply[0] != 'P':
				t.Errorf("%s: reply is not an xpra packet: %.80q", tc.name, reply)
			case tc.reply == "" && len(reply) == 0 && tc.name != "truncated hello":
				// Everything but a half-closed stream gets told why.
				t.Errorf("%s: closed without a disconnect packet", tc.name)
			}
			t.Logf("%s: closed after %d reply bytes", tc.name, len(reply))
		})
	}
	// Meanwhile, a real client gets in.
	if got, err := reached(t, good); err != nil || got != "hostile" {
		t.Fatalf("during the attack the client reached %q: %v", got, err)
	}
	wg.Wait()
	if err := syscall.Kill(p.Pid(), 0); err != nil {
		t.Fatalf("the supervisor is gone: %v", err)
	}
	if got, err := reached(t, good); err != nil || got != "hostile" {
		t.Fatalf("after the attack the client reached %q: %v", got, err)
	}
	// A hello with an unexpected structure must not bring anyone down either.
	if _, err := run(t, probe.Options{URL: p.URL("nosuchuser:secret", ""), Request: probe.Connect}); refusal(err) != "authentication failed" {
		t.Fatalf("unknown user: %v", err)
	}
}
