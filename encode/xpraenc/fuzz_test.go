// SPDX-License-Identifier: GPL-2.0-or-later

package xpraenc

import (
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/encode/server"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// FuzzPacket feeds decoded packets to a caller's session holding a real
// x264 context (seq 1): whatever arrives, it is answered with packets
// that encode, or refused with a protocol error; nothing panics, and
// the Go memory it takes stays within the frame limit.
func FuzzPacket(f *testing.F) {
	const W, H = 16, 16
	meta, pix := frame(frametest.Synthetic(W, H, 1), codec.BGRX, W*4)
	for _, p := range [][]any{
		{"context-request", int64(2), "x264", "h264", int64(W), int64(H), "BGRX", value.Dict{{Key: "quality", Value: int64(70)}}},
		{"context-compress", int64(1), meta, pix, value.Dict{{Key: "quality", Value: int64(30)}}, value.Dict{}},
		{"context-compress", int64(1), meta, pix[:100], value.Dict{}, value.Dict{{Key: "lz4", Value: true}}},
		{"context-close", int64(1), "encoder closed"},
		{"encode", "rgb32", "BGRX", pix, int64(W), int64(H), int64(W * 4), value.Dict{}, value.Dict{}},
		{"hello", hello6("h264")},
	} {
		b, err := rencode.Encode(p, rencode.Plus)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	cfg := Config{Config: server.Config{MaxWidth: 256, MaxHeight: 256, MaxContextsPerConn: 4, Threads: 1}}
	cfg.defaults()
	p := pool.Open(nil, pool.Config{MaxCPU: 8}, quiet)
	f.Cleanup(p.Close)
	s := &Server{cfg: cfg, pool: p, log: quiet}
	var sent int
	ss := newSession(s, 1000, quiet, func(p conn.Packet) error {
		if _, err := rencode.Encode(p, rencode.Plus); err != nil {
			f.Fatalf("reply %v does not encode: %v", brief(p), err)
		}
		sent++
		return nil
	})
	open := conn.Packet{"context-request", int64(1), "x264", "h264", int64(W), int64(H), "BGRX", value.Dict{}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, ok := ss.ctxs[1]; !ok {
			if err := ss.dispatch(append(conn.Packet(nil), open...)); err != nil {
				t.Fatal(err)
			}
		}
		fuzzcheck.Bounded(t, 8<<20, func() {
			p, err := conn.Decode(wire.RencodePlus, data)
			if err != nil {
				return
			}
			if _, ok := p[0].(string); !ok {
				return // conn.ReadPacket maps types to names or refuses
			}
			if p[0] == "hello" {
				ss.hello(p)
				return
			}
			ss.dispatch(p)
		})
		if len(ss.ctxs) > cfg.MaxContextsPerConn {
			t.Fatalf("%d contexts open, the limit is %d", len(ss.ctxs), cfg.MaxContextsPerConn)
		}
	})
}

// FuzzStream sends a 6.x hello and then arbitrary bytes to a served
// connection (framing, raw chunks, lz4, packets): the server answers or
// disconnects and closes, and its memory stays bounded.
func FuzzStream(f *testing.F) {
	const W, H = 16, 16
	meta, pix := frame(frametest.Synthetic(W, H, 2), codec.BGRX, W*4)
	var seed []byte
	for _, p := range [][]any{
		{"context-request", int64(1), "x264", "h264", int64(W), int64(H), "BGRX", value.Dict{}},
		{"context-compress", int64(1), meta, pix, value.Dict{}, value.Dict{}},
		{"context-close", int64(1), "done"},
	} {
		b, err := rencode.Encode(p, rencode.Plus)
		if err != nil {
			f.Fatal(err)
		}
		seed = append(wire.AppendHeader(seed, wire.Header{Flags: wire.RencodePlus.Flag(), Size: uint32(len(b))}), b...)
	}
	f.Add(seed)
	f.Add(append(wire.AppendHeader(nil, wire.Header{Index: 3, Level: 0x11, Size: 5}), 0xff, 0xff, 0xff, 0x0f, 0))
	hello, err := rencode.Encode([]any{"hello", hello6("")}, rencode.Plus)
	if err != nil {
		f.Fatal(err)
	}
	hello = append(wire.AppendHeader(nil, wire.Header{Flags: wire.RencodePlus.Flag(), Size: uint32(len(hello))}), hello...)
	p := pool.Open(nil, pool.Config{MaxCPU: 8}, quiet)
	f.Cleanup(p.Close)
	s := New(Config{Config: server.Config{MaxWidth: 256, MaxHeight: 256, MaxContextsPerConn: 4, Threads: 1,
		AllowUID: func(uint32) bool { return true }, BodyTimeout: time.Second}}, p, quiet)
	f.Fuzz(func(t *testing.T, data []byte) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		sf := os.NewFile(uintptr(fds[0]), "server")
		srvConn, err := net.FileConn(sf) // a dup: sf is ours to close
		sf.Close()
		if err != nil {
			t.Fatal(err)
		}
		cli := os.NewFile(uintptr(fds[1]), "caller")
		defer cli.Close()
		fuzzcheck.Bounded(t, 16<<20, func() {
			done, wrote := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				s.ln.ServeConn(srvConn.(*net.UnixConn))
			}()
			go func() {
				defer close(wrote)
				cli.Write(hello)
				cli.Write(data)
				unix.Shutdown(int(cli.Fd()), unix.SHUT_WR)
			}()
			io.Copy(io.Discard, cli)
			<-done
			<-wrote
		})
	})
}
