// SPDX-License-Identifier: GPL-2.0-or-later

package control

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// fuzzLimit bounds what one control connection may allocate: the frame
// reader's buffer, one packet of at most 64 KiB (compressed or not), its
// decoded form (a few dozen bytes per input byte at worst), the replies
// and the socketpair, with room to spare.
const fuzzLimit = 8 << 20

// FuzzServeConn feeds arbitrary bytes to the server side of a control
// connection, on a real socketpair, as a local client would send them.
// Nothing may panic or hang, and memory stays bounded. Seeds: real 3.1.3
// client captures and the hellos of each request.
func FuzzServeConn(f *testing.F) {
	for _, b := range shared.TraceSeeds(f, "[ace]*.c2s.bin") {
		if len(b) < 64<<10 {
			f.Add(b)
		}
	}
	for _, h := range []value.Dict{
		hello("info"), hello("version"), hello("stop"), hello("screenshot"), hello(""),
		hello("info", value.Item{Key: "challenge", Value: true}),
	} {
		f.Add(encode(f, conn.Packet{packet.Hello, h}))
	}
	f.Add(encode(f, conn.Packet{packet.Ping, int64(1)}))
	f.Add([]byte("P\x01\x00\x00\x00\x10\x00\x00"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, fuzzLimit, func() {
			srv, cli := socketPair(t)
			defer cli.Close()
			s := &Server{Owner: os.Getuid(), Info: testInfo, Stop: func(string) {},
				helloTimeout: 2 * time.Second, exitTimeout: time.Second, closeGrace: time.Second}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = s.serveConn(srv)
				srv.Close()
			}()
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				_, _ = cli.Write(in) // fails once the server has given up
				_ = cli.CloseWrite()
			}()
			_ = cli.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, _ = io.Copy(io.Discard, cli)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("serveConn did not return")
			}
			<-wrote
		})
	})
}
