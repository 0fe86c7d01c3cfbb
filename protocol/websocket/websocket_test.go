package websocket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
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

// The mask XOR agrees with gobwas/ws's, at every offset and across the
// lengths where it switches method.
func TestCipher(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for _, n := range []int{0, 1, 3, 15, 16, 17, 511, 512, 513, 1500, 70000} {
		for off := range 5 {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(i * 7)
			}
			want := bytes.Clone(p)
			ws.Cipher(want, key, off)
			cipher(p, key, off)
			if !bytes.Equal(p, want) {
				t.Fatalf("%d bytes at offset %d differ from gobwas/ws", n, off)
			}
		}
	}
}

// Headers we write are the ones gobwas/ws writes, and we read its headers
// back as it does.
func TestHeaderAgainstGobwas(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536, 1 << 24} {
		for _, masked := range []bool{false, true} {
			mask := [4]byte{1, 2, 3, 4}
			want := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(n), Masked: masked}
			if masked {
				want.Mask = mask
			}
			var b bytes.Buffer
			if err := ws.WriteHeader(&b, want); err != nil {
				t.Fatal(err)
			}
			if got := appendHeader(nil, opBinary, n, masked, mask); !bytes.Equal(got, b.Bytes()) {
				t.Fatalf("%d bytes, masked %v: % x, gobwas/ws writes % x", n, masked, got, b.Bytes())
			}
			h, err := readHeader(bytes.NewReader(b.Bytes()), make([]byte, maxHeaderSize))
			if err != nil || h.length != int64(n) || h.masked != masked || h.mask != want.Mask || !h.fin || h.op != opBinary {
				t.Fatalf("%d bytes, masked %v: read %+v, %v", n, masked, h, err)
			}
		}
	}
	if _, err := readHeader(bytes.NewReader([]byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}), make([]byte, maxHeaderSize)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("a length with its top bit set: %v", err)
	}
	for _, in := range [][]byte{{0x82, 0x7e, 0x01}, {0x82, 0x85, 1, 2}} {
		if _, err := readHeader(bytes.NewReader(in), make([]byte, maxHeaderSize)); err != io.ErrUnexpectedEOF {
			t.Fatalf("% x: %v, want io.ErrUnexpectedEOF", in, err)
		}
	}
}

// Dial against gobwas/ws's server: the handshake, then frames both ways,
// ours masked; and the server's frames sent right behind its response.
func TestDialGobwasServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == Subprotocol },
			OnRequest: func(uri []byte) error {
				if string(uri) != "/x%20y" {
					return fmt.Errorf("request URI %q", uri)
				}
				return nil
			}}
		if _, err := u.Upgrade(c); err != nil {
			done <- err
			return
		}
		if err := ws.WriteFrame(c, ws.NewBinaryFrame([]byte("early"))); err != nil {
			done <- err
			return
		}
		h, err := ws.ReadHeader(c)
		if err != nil {
			done <- err
			return
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c, p); err != nil {
			done <- err
			return
		}
		if !h.Masked {
			done <- errors.New("client frame not masked")
			return
		}
		ws.Cipher(p, h.Mask, 0)
		done <- ws.WriteFrame(c, ws.NewBinaryFrame(append([]byte("echo "), p...)))
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, nc, ln.Addr().String(), "/x y")
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789"), 100)
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	want := "early" + "echo " + string(payload)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v", got[:min(len(got), 20)], err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Handshake responses that must be refused, and ones that must not.
func TestReadResponse(t *testing.T) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	const accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + accept + "Sec-WebSocket-Protocol: binary\r\n"
	tests := []struct {
		name, resp string
		ok         bool
	}{
		{"xpra's answer", ok + "Server: xpra\r\n\r\n", true},
		{"case and spacing", "HTTP/1.1 101 OK\nupgrade:WebSocket\r\nCONNECTION:  upgrade \r\n" + accept + "sec-websocket-protocol: binary\r\n\r\n", true},
		{"forbidden", "HTTP/1.1 403 Forbidden\r\n\r\n", false},
		{"HTTP/1.0", strings.Replace(ok, "HTTP/1.1", "HTTP/1.0", 1) + "\r\n", false},
		{"wrong accept", strings.Replace(ok, "s3pP", "AAAA", 1) + "\r\n", false},
		{"no accept", strings.Replace(ok, accept, "", 1) + "\r\n", false},
		{"no subprotocol", strings.Replace(ok, "Sec-WebSocket-Protocol: binary\r\n", "", 1) + "\r\n", false},
		{"other subprotocol", strings.Replace(ok, ": binary", ": chat", 1) + "\r\n", false},
		{"no upgrade", strings.Replace(ok, "Upgrade: websocket\r\n", "", 1) + "\r\n", false},
		{"bad connection", strings.Replace(ok, "Connection: Upgrade", "Connection: close", 1) + "\r\n", false},
		{"malformed line", ok + "nonsense\r\n\r\n", false},
		{"cut short", ok, false},
		{"long line", ok + "X: " + strings.Repeat("a", maxResponseLine) + "\r\n\r\n", false},
		{"many lines", ok + strings.Repeat("X: y\r\n", maxResponseHeaders) + "\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := readResponse(bufio.NewReaderSize(strings.NewReader(tc.resp), maxResponseLine), key)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// FuzzReadResponse reads arbitrary bytes as a server's handshake response:
// no panics, bounded allocation, and only a response with our accept key
// passes.
func FuzzReadResponse(f *testing.F) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: binary\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, 1<<20, func() {
			err := readResponse(bufio.NewReaderSize(bytes.NewReader(in), maxResponseLine), key)
			if err == nil && !bytes.Contains(in, []byte("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")) {
				t.Fatalf("accepted without the accept key: %q", in)
			}
		})
	})
}
