// SPDX-License-Identifier: GPL-2.0-or-later

package websocket

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/shared"
)

// fakeConn is a net.Conn over a reader and a buffer, for framing tests.
type fakeConn struct {
	io.Reader
	out bytes.Buffer
}

func (f *fakeConn) Write(p []byte) (int, error)      { return f.out.Write(p) }
func (f *fakeConn) Close() error                     { return nil }
func (f *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// TV9 (PROTOCOL.md §10): frame headers, masking, the accept key.
func TestTV9Frames(t *testing.T) {
	tests := []struct {
		n      int
		client bool
		header string
	}{
		{120, false, "82 78"},
		{300, false, "82 7e 01 2c"},
		{70000, false, "82 7f 00 00 00 00 00 01 11 70"},
		{17, true, "82 91 01 02 03 04"},
	}
	for _, tc := range tests {
		fc := &fakeConn{Reader: strings.NewReader("")}
		c := NewConn(fc, nil, tc.client)
		c.newMask = func() [4]byte { return [4]byte{1, 2, 3, 4} }
		payload := bytes.Repeat([]byte{'x'}, tc.n)
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		out := fc.out.Bytes()
		hdr := unhex(tc.header)
		if !bytes.HasPrefix(out, hdr) || len(out) != len(hdr)+tc.n {
			t.Fatalf("%d bytes: frame starts % x (len %d), want %s", tc.n, out[:min(len(out), 14)], len(out), tc.header)
		}
		body := out[len(hdr):]
		if tc.client {
			want := make([]byte, tc.n)
			for i := range want {
				want[i] = 'x' ^ byte(i%4+1)
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("masked payload % x", body)
			}
		}
		// And we read back what we wrote, masked or not.
		back, err := io.ReadAll(NewConn(&fakeConn{Reader: bytes.NewReader(out)}, nil, !tc.client))
		if err != nil || !bytes.Equal(back, payload) {
			t.Fatalf("%d bytes: read back %d bytes, %v", tc.n, len(back), err)
		}
	}
}

func TestTV9AcceptKey(t *testing.T) {
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
	fc := &fakeConn{Reader: strings.NewReader(req)}
	u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == Subprotocol }}
	if _, err := u.Upgrade(fc); err != nil {
		t.Fatal(err)
	}
	resp := fc.out.String()
	if !strings.Contains(resp, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") || !strings.Contains(resp, "Sec-WebSocket-Protocol: binary") {
		t.Fatalf("response:\n%s", resp)
	}
}

func frame(op ws.OpCode, fin bool, payload string, mask bool) []byte {
	f := ws.NewFrame(op, fin, []byte(payload))
	if mask {
		f = ws.MaskFrameWith(f, [4]byte{9, 8, 7, 6})
	}
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestRead(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    string
		reply   []byte // what we must write back
		wantErr bool
	}{
		{"unmasked from an xpra client", frame(ws.OpBinary, true, "P\x01abc", false), "P\x01abc", nil, false},
		{"masked from a browser", frame(ws.OpBinary, true, "hello", true), "hello", nil, false},
		{"frames concatenate", cat(frame(ws.OpBinary, true, "ab", false), frame(ws.OpBinary, true, "cd", true)), "abcd", nil, false},
		{"continuation", cat(frame(ws.OpBinary, false, "ab", false), frame(ws.OpContinuation, true, "cd", false)), "abcd", nil, false},
		{"text treated as binary", frame(ws.OpText, true, "txt", false), "txt", nil, false},
		{"ping answered", cat(frame(ws.OpPing, true, "hi", true), frame(ws.OpBinary, true, "x", false)), "x", frame(ws.OpPong, true, "hi", false), false},
		{"close ends the stream", cat(frame(ws.OpBinary, true, "x", false), frame(ws.OpClose, true, "\x03\xe8bye", false), frame(ws.OpBinary, true, "lost", false)), "x",
			frame(ws.OpClose, true, "\x03\xe8", false), false},
		{"reserved bits", []byte{0xc2, 0x01, 'x'}, "", nil, true},
		{"unknown opcode", []byte{0x83, 0x00}, "", nil, true},
		{"fragmented ping", []byte{0x09, 0x00}, "", nil, true},
		{"oversized ping", cat([]byte{0x89, 0x7e, 0x00, 0x7e}, make([]byte, 126)), "", nil, true},
		{"truncated payload", []byte{0x82, 0x05, 'a'}, "a", nil, true},
		{"truncated header", []byte{0x82}, "", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fc := &fakeConn{Reader: bytes.NewReader(tc.in)}
			got, err := io.ReadAll(NewConn(fc, nil, false))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("read %q, want %q", got, tc.want)
			}
			if tc.reply != nil && !bytes.Equal(fc.out.Bytes(), tc.reply) {
				t.Fatalf("wrote % x, want % x", fc.out.Bytes(), tc.reply)
			}
		})
	}
}

func TestMaxFrame(t *testing.T) {
	c := NewConn(&fakeConn{Reader: bytes.NewReader([]byte{0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0})}, nil, false)
	c.SetMaxFrame(1 << 20)
	if _, err := io.ReadAll(c); !errors.Is(err, ErrProtocol) {
		t.Fatalf("a 4 GiB frame: %v", err)
	}
}

// The handshake bytes the server sent after its response stay readable.
func TestNewConnKeepsBuffered(t *testing.T) {
	br := bufio.NewReader(bytes.NewReader(frame(ws.OpBinary, true, "early", false)))
	br.Peek(1)
	got, _ := io.ReadAll(NewConn(&fakeConn{Reader: bytes.NewReader(frame(ws.OpBinary, true, "late", false))}, br, true))
	if string(got) != "earlylate" {
		t.Fatalf("got %q", got)
	}
}

// FuzzRead reads arbitrary bytes as frames from a peer: no panics, no
// allocation beyond the frame limit, never more bytes out than in.
func FuzzRead(f *testing.F) {
	f.Add(frame(ws.OpBinary, true, "P\x01\x00\x00\x00\x00\x00\x01\x05", false))
	f.Add(cat(frame(ws.OpPing, true, "x", true), frame(ws.OpClose, true, "\x03\xe8", false)))
	f.Add(cat(frame(ws.OpBinary, false, "ab", true), frame(ws.OpContinuation, true, "cd", false)))
	// The real HTML5 client's masked frames after its upgrade request (f1).
	for _, b := range shared.TraceSeeds(f, "f1-html5-ws-via-proxy.client-proxy.c2s.bin") {
		if _, frames, ok := bytes.Cut(b, []byte("\r\n\r\n")); ok {
			f.Add(frames[:min(len(frames), 16<<10)])
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, 1<<20, func() {
			c := NewConn(&fakeConn{Reader: bytes.NewReader(in)}, nil, false)
			c.SetMaxFrame(1 << 16)
			out, _ := io.ReadAll(c)
			if len(out) > len(in) {
				t.Fatalf("%d bytes out of %d", len(out), len(in))
			}
		})
	})
}

// CloseWrite sends one close frame (1000): not a second one, and none
// after the echo of the peer's close, which already ended our side.
func TestCloseWrite(t *testing.T) {
	tests := []struct {
		name string
		in   []byte // read before CloseWrite
		want []byte // all we write
	}{
		{"ours", nil, frame(ws.OpClose, true, "\x03\xe8", false)},
		{"after the peer's", frame(ws.OpClose, true, "\x03\xe9", true), frame(ws.OpClose, true, "\x03\xe9", false)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fc := &fakeConn{Reader: bytes.NewReader(tc.in)}
			c := NewConn(fc, nil, false)
			if _, err := io.ReadAll(c); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(fc.out.Bytes(), tc.want) {
				t.Fatalf("wrote % x, want % x", fc.out.Bytes(), tc.want)
			}
			if c.NetConn() != net.Conn(fc) {
				t.Fatal("NetConn is not the connection under the frames")
			}
		})
	}
}
