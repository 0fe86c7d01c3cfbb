// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
)

// loginPacketLimit is the pre-auth packet limit of the fuzz target: a
// quarter of the default, so that an input's worst case stays cheap.
const loginPacketLimit = 256 << 10

// FuzzLogin sends arbitrary client bytes to the pre-auth process's login
// (the real Login, on a real socketpair) while the supervisor's end of
// the ipc channel answers AuthBegin with a challenge (first input byte
// even) or without one, and accepts the AuthVerify. Nothing may panic or
// hang; the handover the pre-auth process writes must be a sealed memfd
// that the relay reads (handover.Unmarshal, within its budget) as this
// connection's state. Seeds: the real clients' bytes of the captures.
func FuzzLogin(f *testing.F) {
	for _, b := range shared.TraceSeeds(f, "[abce]*.c2s.bin", "decoded/f1-html5-ws-via-proxy.client-proxy.c2s.unframed.bin") {
		if len(b) < 64<<10 {
			f.Add(append([]byte{0}, b...))
			f.Add(append([]byte{1}, b...))
		}
	}
	f.Add([]byte("\x00GET / HTTP/1.1\r\n\r\n"))
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		fuzzcheck.Bounded(t, 16<<20, func() { runLogin(t, log, in[0]&1 == 0, in[1:]) })
	})
}

func runLogin(t *testing.T, log *slog.Logger, challenge bool, client []byte) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "client")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cli, srv := conn(fds[0]), conn(fds[1])
	defer cli.Close()
	sup, childEnd, err := ipc.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	child, err := ipc.FromFile(childEnd)
	childEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()

	go func() {
		_, _ = cli.Write(client) // fails once the login has given up
		_ = cli.(*net.UnixConn).CloseWrite()
		_, _ = io.Copy(io.Discard, cli)
	}()
	supErr := make(chan error, 1)
	go func() { supErr <- playSupervisor(sup, challenge) }()

	done := make(chan error, 1)
	go func() {
		stream, _, err := Login(srv, child, Options{Listener: "tcp", Transport: "tcp", Peer: "127.0.0.1:4711",
			PacketLimit: loginPacketLimit, LoginTimeout: 10 * time.Second, Log: log})
		if stream != nil {
			stream.Close()
		}
		srv.Close()
		child.Close() // the process ends: the supervisor's end sees it
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("login did not end within 20 s")
	}
	if err := <-supErr; err != nil {
		t.Fatal(err)
	}
}

// playSupervisor answers one login as the supervisor would grant it, and
// checks what the pre-auth process sent.
func playSupervisor(sup *ipc.Conn, challenge bool) error {
	m, f, _, err := sup.Recv()
	if f != nil {
		f.Close()
		return errors.New("a descriptor came with AuthBegin")
	}
	if errors.Is(err, ipc.ErrClosed) {
		return nil // a version request, or a client refused before asking
	}
	if err != nil {
		return err
	}
	if m.Kind != ipc.AuthBegin || m.Transport != "tcp" {
		return errors.New("first message " + m.Kind + ", transport " + m.Transport)
	}
	reply := ipc.Message{Kind: ipc.NoChallenge}
	if challenge {
		reply = ipc.Message{Kind: ipc.Challenge, Salt: digest.NewServerSalt(), Digest: "hmac+sha256", SaltDigest: "hmac+sha256", Prompt: "password"}
	}
	if err := sup.Send(reply, nil); err != nil {
		return err
	}
	m, f, _, err = sup.Recv()
	if errors.Is(err, ipc.ErrClosed) {
		return nil // no (valid) answer: refused by the pre-auth process
	}
	if err != nil {
		return err
	}
	if f == nil || m.Kind != ipc.AuthVerify || !launch.IsMemfd(f) {
		if f != nil {
			f.Close()
		}
		return errors.New("second message " + m.Kind + " without a memfd")
	}
	blob, err := launch.ReadAll(f, handover.MaxSize)
	f.Close()
	if err != nil {
		return err
	}
	// What the relay will read.
	st, err := handover.Unmarshal(blob)
	if err != nil {
		return errors.New("the relay cannot read the handover: " + err.Error())
	}
	if st.Listener != "tcp" || st.Peer != "127.0.0.1:4711" {
		return errors.New("the handover names listener " + st.Listener + ", peer " + st.Peer)
	}
	return sup.Send(ipc.Message{Kind: ipc.Accepted, Worker: 1}, nil)
}
