// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/encode/server"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/peercred"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Started as root with --xpra-socket, the worker binds both sockets,
// passes both to itself run as its user, and serves a 6.x caller on the
// xpra one; xpra's directory is not given to the encoder user.
func TestXpraSocket(t *testing.T) {
	testenv.Root(t)
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "xpra-proxy-encode")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	encSock := filepath.Join(dir, "enc", "socket")
	xpraSock := filepath.Join(dir, "xpra", "encoder")
	cmd := exec.Command(bin, "--user=nobody", "--socket="+encSock, "--xpra-socket="+xpraSock, "--allow-uids=0", "--debug")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker exit: %v", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("worker did not stop on SIGTERM")
		}
	})
	dialBoth := func() (*net.UnixConn, *net.UnixConn) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			e, err1 := net.DialUnix("unix", nil, &net.UnixAddr{Name: encSock, Net: "unix"})
			x, err2 := net.DialUnix("unix", nil, &net.UnixAddr{Name: xpraSock, Net: "unix"})
			if err1 == nil && err2 == nil {
				return e, x
			}
			for _, c := range []*net.UnixConn{e, x} {
				if c != nil {
					c.Close()
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("sockets not served: %v, %v", err1, err2)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	ec, xc := dialBoth()
	defer ec.Close()
	defer xc.Close()
	for _, c := range []*net.UnixConn{ec, xc} {
		cred, err := peercred.Of(c)
		if err != nil || cred.Uid != 65534 {
			t.Fatalf("%v served by %+v (%v), not nobody", c.RemoteAddr(), cred, err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Dir(xpraSock), &st); err != nil || st.Uid != 0 {
		t.Errorf("xpra's socket directory owned by %d (%v), want root's", st.Uid, err)
	}

	// A 6.x remote codec's exchange, in brief.
	c := conn.New(xc)
	c.SetEncoding(wire.RencodePlus)
	xc.SetDeadline(time.Now().Add(20 * time.Second))
	send := func(p ...any) {
		t.Helper()
		if err := c.WritePacket(p); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(name string) conn.Packet {
		t.Helper()
		p, err := c.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if p[0] != name {
			t.Fatalf("got %v, want %s", p[0], name)
		}
		return p
	}
	send("hello", hello64)
	expect("hello")
	expect("encodings")
	expect("startup-complete")
	send("context-request", int64(1), "x264", "h264", int64(64), int64(64), "BGRX", value.Dict{})
	if r := expect("context-response"); r[2] != true {
		t.Fatalf("context-response %v", r[1:])
	}
	meta := value.Dict{{Key: "width", Value: int64(64)}, {Key: "height", Value: int64(64)}, {Key: "rowstride", Value: int64(256)},
		{Key: "pixel_format", Value: "BGRX"}, {Key: "planes", Value: int64(0)}, {Key: "bytesperpixel", Value: int64(4)}}
	send("context-compress", int64(1), meta, bytes.Repeat([]byte{10, 200, 30, 0}, 64*64), value.Dict{}, value.Dict{})
	d := expect("context-data")
	if data, _ := d[2].([]byte); !bytes.HasPrefix(data, []byte{0, 0, 0, 1}) {
		t.Fatalf("context-data is not an annex-B H.264 frame: %v", d[1:])
	}
}

// hello64 is a 6.4 remote codec's hello, in brief.
var hello64 = value.Dict{{Key: "version", Value: "6.4"}, {Key: "client_type", Value: "encode"},
	{Key: "encoders", Value: []any{"rencodeplus"}}, {Key: "compressors", Value: []any{"lz4", "none"}},
	{Key: "encodings", Value: []any{"rgb32", "rgb24"}}, {Key: "wants", Value: []any{"encodings", "video"}}}

// The two sockets draw on one connection limit, as the command sets
// them up: with one connection per uid, a uid served on either socket is
// refused on the other, each protocol's way (encproto: closed
// unanswered; xpra: a "session busy" disconnect).
func TestSocketsShareLimits(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	setup := func(t *testing.T) (encSock, xpraSock string) {
		p := pool.Open(nil, pool.Config{}, quiet)
		srv := server.New(server.Config{MaxConnsPerUID: 1, AllowUID: func(uint32) bool { return true }}, p, quiet)
		dir := t.TempDir()
		encSock, xpraSock = filepath.Join(dir, "enc"), filepath.Join(dir, "xpra")
		var lns [2]*net.UnixListener
		for i, path := range []string{encSock, xpraSock} {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			lns[i] = ln
		}
		go srv.Serve(lns[0])
		stop := serveXpra(lns[1], xpraSock, srv, p, quiet)
		t.Cleanup(func() { stop(); srv.Close(); p.Close() })
		return encSock, xpraSock
	}
	dial := func(t *testing.T, path string) *net.UnixConn {
		uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { uc.Close() })
		uc.SetDeadline(time.Now().Add(10 * time.Second))
		return uc
	}
	// encHello says hello on the encproto socket: nil once answered.
	encHello := func(t *testing.T, path string) error {
		ec := encproto.NewConn(dial(t, path))
		body, typ, err := encproto.AppendRequest(nil, encproto.Hello{Version: encproto.Version})
		if err != nil {
			t.Fatal(err)
		}
		if err := ec.Write(typ, 1, body, nil, -1); err != nil {
			return err
		}
		h, _, _, err := ec.Read(encproto.MaxReplyBody)
		if err == nil && h.Type != encproto.THelloReply {
			return fmt.Errorf("a %v reply to hello", h.Type)
		}
		return err
	}
	// xpraHello says hello on the xpra socket and returns the first
	// packet back: "hello" once admitted.
	xpraHello := func(t *testing.T, path string) conn.Packet {
		c := conn.New(dial(t, path))
		c.SetEncoding(wire.RencodePlus)
		// A refused caller may find the socket closed before its hello
		// is written; the disconnect is still there to read.
		c.WritePacket(conn.Packet{"hello", hello64})
		p, err := c.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	busy := fmt.Sprintf("uid %d has 1 connections, the limit", os.Getuid())

	t.Run("encproto first", func(t *testing.T) {
		encSock, xpraSock := setup(t)
		if err := encHello(t, encSock); err != nil {
			t.Fatalf("first connection: %v", err)
		}
		p := xpraHello(t, xpraSock)
		if reason, details := packet.DisconnectReason(p); p[0] != packet.Disconnect ||
			reason != packet.ReasonSessionBusy || len(details) != 1 || details[0] != busy {
			t.Fatalf("second connection, on the xpra socket: %v", p)
		}
	})
	t.Run("xpra first", func(t *testing.T) {
		encSock, xpraSock := setup(t)
		if p := xpraHello(t, xpraSock); p[0] != "hello" {
			t.Fatalf("first connection: %v", p)
		}
		if err := encHello(t, encSock); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("second connection, on the encproto socket: %v, want it closed unanswered", err)
		}
	})
}
