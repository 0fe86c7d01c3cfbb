// SPDX-License-Identifier: GPL-2.0-or-later

package worker

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/internal/fakexpra"
	"github.com/xpra-proxy/xpra-proxy/internal/timeline"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/xpraurl"
)

// lockedBuffer is a log sink the relay's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// A relay given a timeline (the supervisor at debug level) logs its
// handshake's stages once the server's hello has reached the client; one
// without logs none.
func TestRelayTimeline(t *testing.T) {
	for _, tc := range []struct {
		name string
		tl   *timeline.Timeline
		want bool
	}{
		{"with a timeline", timeline.At(time.Now()), true},
		{"without", nil, false},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			cl, cw := net.Pipe()
			sv, sw := net.Pipe()
			defer cl.Close()
			defer sv.Close()
			var logs lockedBuffer
			hello := value.Dict{{Key: "version", Value: "3.1.3"}, {Key: "rencode", Value: true}}
			s := &Session{State: handover.State{Hello: hello}, Log: slog.New(slog.NewTextHandler(&logs, nil)), Timeline: tc.tl,
				// The control socket goes to a directory of the test's.
				Launch: launch.Launch{SocketDirs: []string{t.TempDir()}, UID: os.Getuid()}}
			s.client, s.nc = conn.New(cw), cw
			s.hello = caps.ParseHello(hello)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.relay(ctx, cw, sw, xpraurl.Target{}) }()
			server := conn.New(sv)
			if p, err := server.ReadPacket(); err != nil || p[0] != packet.Hello {
				t.Fatalf("server got %v, %v", p, err)
			}
			go server.WritePacket(conn.Packet{packet.Hello, fakexpra.Hello("timeline")})
			if p, err := conn.New(cl).ReadPacket(); err != nil || p[0] != packet.Hello {
				t.Fatalf("client got %v, %v; want the server's hello", p, err)
			}
			cancel()
			cl.Close()
			sv.Close()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the relay did not return")
			}
			line := ""
			for l := range strings.SplitSeq(logs.String(), "\n") {
				if strings.Contains(l, `msg="relay setup timeline"`) {
					line = l
				}
			}
			if (line != "") != tc.want {
				t.Fatalf("timeline line %q, want one: %v; log:\n%s", line, tc.want, logs.String())
			}
			last := -1
			for _, stage := range []string{" hello_sent=", " server_hello=", " hello_forwarded="} {
				i := strings.Index(line, stage)
				if tc.want && (i < 0 || i < last) {
					t.Errorf("timeline line %q: %s missing or out of order", line, stage)
				}
				last = i
			}
		})
	}
}
