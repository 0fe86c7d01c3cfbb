// SPDX-License-Identifier: GPL-2.0-or-later

package control

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"golang.org/x/sys/unix"
)

// socketPair returns two connected unix stream sockets: the kernel gives
// each the other's credentials, as on an accepted connection.
func socketPair(t testing.TB) (srv, cli *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1]
}

// testInfo is what the tests' servers report: nested, as the reference's.
func testInfo() value.Dict {
	return value.Dict{{Key: "proxy", Value: value.Dict{
		{Key: "version", Value: "0.1-test"},
		{Key: "latency", Value: value.Dict{{Key: "client", Value: int64(3)}}},
	}}}
}

// stopRecorder counts Stop calls.
type stopRecorder struct {
	mu      sync.Mutex
	reasons []string
}

func (r *stopRecorder) Stop(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
}

func (r *stopRecorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reasons)
}

// hello is a 3.1 client's one-shot hello with the given request; extra
// keys are set last.
func hello(request string, extra ...value.Item) value.Dict {
	d := queryHello(request)
	if request == "" {
		d.Delete("request")
		d.Delete("_request")
	}
	for _, it := range extra {
		d.Set(it.Key.(string), it.Value)
	}
	return d
}

func encode(t testing.TB, p conn.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := conn.New(&b).WritePacket(p); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readAll reads the packets the server sent until it closed.
func readAll(t testing.TB, cli net.Conn) []conn.Packet {
	t.Helper()
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	c := conn.New(cli)
	var out []conn.Packet
	for {
		p, err := c.ReadPacket()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, unix.ECONNRESET) {
				t.Errorf("reading replies: %v", err)
			}
			return out
		}
		out = append(out, p)
	}
}

// samePackets compares packet lists; legacy rencode makes every string
// bytes, hence loose.
func samePackets(a, b []conn.Packet) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !value.Equal(any(a[i]), any(b[i]), true) {
			return false
		}
	}
	return true
}

func disconnect(reason string, details ...string) conn.Packet {
	return packet.NewDisconnect(reason, details...)
}

func TestServeConn(t *testing.T) {
	onlyHandlesDisc := disconnect(packet.ReasonControlCommand, onlyHandles)
	infoReply := conn.Packet{packet.Hello, testInfo()}
	cases := []struct {
		name    string
		in      []byte
		version string
		want    []conn.Packet
		stops   []string
		wantErr string // "" for none
	}{
		{name: "info", in: encode(t, conn.Packet{packet.Hello, hello("info")}), want: []conn.Packet{infoReply}},
		{name: "legacy info flag", in: encode(t, conn.Packet{packet.Hello, hello("",
			value.Item{Key: "info_request", Value: true})}), want: []conn.Packet{infoReply}},
		// xpra id also sets info_request: the reference answers with info.
		{name: "id", in: encode(t, conn.Packet{packet.Hello, hello("id",
			value.Item{Key: "info_request", Value: true})}), want: []conn.Packet{infoReply}},
		{name: "version", version: "9.9", in: encode(t, conn.Packet{packet.Hello, hello("version",
			value.Item{Key: "full-version-request", Value: true})}),
			want: []conn.Packet{{packet.Hello, value.Dict{{Key: "version", Value: "9.9"}}}}},
		{name: "default version", in: encode(t, conn.Packet{packet.Hello, hello("version")}),
			want: []conn.Packet{{packet.Hello, value.Dict{{Key: "version", Value: DefaultVersion}}}}},
		{name: "stop", in: encode(t, conn.Packet{packet.Hello, hello("stop")}),
			want:  []conn.Packet{disconnect(packet.ReasonServerShutdown, "socket request")},
			stops: []string{"socket request"}},
		{name: "challenge", in: encode(t, conn.Packet{packet.Hello, hello("info", value.Item{Key: "challenge", Value: true})}),
			want:    []conn.Packet{disconnect(packet.ReasonAuthError, "this socket does not use authentication")},
			wantErr: "authentication error"},
		{name: "other request", in: encode(t, conn.Packet{packet.Hello, hello("screenshot")}),
			want: []conn.Packet{onlyHandlesDisc}, wantErr: "control command error"},
		{name: "ui client", in: encode(t, conn.Packet{packet.Hello, hello("")}),
			want: []conn.Packet{onlyHandlesDisc}, wantErr: "control command error"},
		{name: "not a hello", in: encode(t, conn.Packet{packet.Ping, int64(1)}),
			want: []conn.Packet{onlyHandlesDisc}, wantErr: "control command error"},
		{name: "hello without caps", in: encode(t, conn.Packet{packet.Hello, int64(3)}),
			want: []conn.Packet{onlyHandlesDisc}, wantErr: "control command error"},
		{name: "no common encoder", in: encode(t, conn.Packet{packet.Hello, hello("info",
			value.Item{Key: "encoders", Value: []any{"yaml"}}, value.Item{Key: "rencode", Value: false},
			value.Item{Key: "bencode", Value: false})}),
			want:    []conn.Packet{disconnect(packet.ReasonProtocolError, "failed to negotiate a packet encoder")},
			wantErr: "no common packet encoder"},
		{name: "http", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
			want:    []conn.Packet{disconnect(packet.ReasonProtocolError, "invalid packet: expected a hello")},
			wantErr: "protocol error"},
		{name: "too large", in: []byte("P\x01\x00\x00\x00\x10\x00\x00"),
			want:    []conn.Packet{disconnect(packet.ReasonProtocolError, "invalid packet: expected a hello")},
			wantErr: "protocol error"},
		{name: "truncated", in: encode(t, conn.Packet{packet.Hello, hello("info")})[:30],
			want:    []conn.Packet{disconnect(packet.ReasonProtocolError, "invalid packet: expected a hello")},
			wantErr: "protocol error"},
		{name: "nothing", in: nil, wantErr: errNoHello.Error()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := socketPair(t)
			defer cli.Close()
			var rec stopRecorder
			s := &Server{Owner: os.Getuid(), Info: testInfo, Version: tc.version, Stop: rec.Stop}
			errc := make(chan error, 1)
			go func() {
				err := s.serveConn(srv)
				srv.Close()
				errc <- err
			}()
			if _, err := cli.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			// Hanging up after the request is what a client does once it
			// has its reply; the server must not wait for its exit timeout.
			if err := cli.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, cli)
			err := <-errc
			if !samePackets(got, tc.want) {
				t.Errorf("server sent %v, want %v", got, tc.want)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("serveConn: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("serveConn returned %v, want an error with %q", err, tc.wantErr)
			}
			if stops := rec.calls(); !slices.Equal(stops, tc.stops) {
				t.Errorf("Stop calls %q, want %q", stops, tc.stops)
			}
		})
	}
}

// TestServeConnTimeouts: a silent client is told "login timeout"; one that
// keeps the connection after its reply gets the reference's exit timeout.
func TestServeConnTimeouts(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want []conn.Packet
	}{
		{name: "no hello", want: []conn.Packet{disconnect(packet.ReasonLoginTimeout)}},
		{name: "half a hello", in: encode(t, conn.Packet{packet.Hello, hello("info")})[:20],
			want: []conn.Packet{disconnect(packet.ReasonLoginTimeout)}},
		{name: "info, then stays", in: encode(t, conn.Packet{packet.Hello, hello("info")}),
			want: []conn.Packet{{packet.Hello, testInfo()}, disconnect(packet.ReasonClientExitTimeout, "info sent")}},
		{name: "version, then stays", in: encode(t, conn.Packet{packet.Hello, hello("version")}),
			want: []conn.Packet{{packet.Hello, value.Dict{{Key: "version", Value: DefaultVersion}}},
				disconnect(packet.ReasonClientExitTimeout, "version sent")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := socketPair(t)
			defer cli.Close()
			s := &Server{Owner: os.Getuid(), Info: testInfo,
				helloTimeout: 100 * time.Millisecond, exitTimeout: 100 * time.Millisecond, closeGrace: 100 * time.Millisecond}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = s.serveConn(srv)
				srv.Close()
			}()
			if _, err := cli.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, cli)
			<-done
			if !samePackets(got, tc.want) {
				t.Errorf("server sent %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	s := &Server{Owner: 1000}
	for _, tc := range []struct {
		uid  int
		want bool
	}{{0, true}, {1000, true}, {1001, false}, {65534, false}, {-1, false}} {
		if got := s.allowed(tc.uid); got != tc.want {
			t.Errorf("allowed(%d) = %v, want %v", tc.uid, got, tc.want)
		}
	}
}

// TestPeerChecks: a connection whose peer is neither root nor the owner,
// or has no credentials at all, is refused before its bytes are read.
func TestPeerChecks(t *testing.T) {
	t.Run("no credentials", func(t *testing.T) {
		srv, cli := net.Pipe()
		defer cli.Close()
		s := &Server{Owner: os.Getuid(), Info: testInfo, closeGrace: 50 * time.Millisecond}
		errc := make(chan error, 1)
		go func() { errc <- s.serveConn(srv); srv.Close() }()
		got := readAll(t, cli)
		want := []conn.Packet{disconnect(packet.ReasonPermissionError, "cannot identify the peer of this control socket")}
		if !samePackets(got, want) {
			t.Errorf("server sent %v, want %v", got, want)
		}
		if err := <-errc; err == nil {
			t.Error("no error for a peer without credentials")
		}
	})
	t.Run("another uid", func(t *testing.T) {
		if os.Getuid() == 0 {
			t.Skip("root may always talk; TestRealXpraOtherUser covers this as root")
		}
		srv, cli := socketPair(t)
		defer cli.Close()
		s := &Server{Owner: os.Getuid() + 1, Info: testInfo}
		go func() { _ = s.serveConn(srv); srv.Close() }()
		got := readAll(t, cli)
		want := []conn.Packet{disconnect(packet.ReasonPermissionError,
			"uid "+strconv.Itoa(os.Getuid())+" may not use this control socket")}
		if !samePackets(got, want) {
			t.Errorf("server sent %v, want %v", got, want)
		}
	})
}

// startServer listens at a fresh path and serves until the test ends.
func startServer(t *testing.T, s *Server) (path string, done <-chan error) {
	t.Helper()
	dir := t.TempDir()
	host, _ := os.Hostname()
	path = Path(dir, host, os.Getpid())
	l, err := Listen(path, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- s.Serve(ctx, l)
		close(errc) // the cleanup's receive succeeds after the test's
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-errc:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return path, errc
}

func TestServeAndQuery(t *testing.T) {
	var rec stopRecorder
	s := &Server{Owner: os.Getuid(), Info: testInfo, Version: "9.9", Stop: rec.Stop}
	path, done := startServer(t, s)
	ctx := context.Background()

	info, err := Query(ctx, path, "info")
	if err != nil {
		t.Fatal(err)
	}
	if !value.Equal(any(info), any(testInfo()), true) {
		t.Errorf("info %v, want %v", info, testInfo())
	}
	v, err := Query(ctx, path, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !value.Equal(any(v), any(value.Dict{{Key: "version", Value: "9.9"}}), true) {
		t.Errorf("version reply %v", v)
	}
	_, err = Query(ctx, path, "screenshot")
	var de *conn.DisconnectError
	if !errors.As(err, &de) || de.Reason != packet.ReasonControlCommand || !slices.Equal(de.Details, []string{onlyHandles}) {
		t.Errorf("screenshot: %v, want a control command error", err)
	}
	if len(rec.calls()) != 0 {
		t.Fatal("Stop called before a stop request")
	}
	if d, err := Query(ctx, path, "stop"); err != nil || d != nil {
		t.Fatalf("stop: %v, %v", d, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after a stop request")
	}
	if stops := rec.calls(); !slices.Equal(stops, []string{"socket request"}) {
		t.Errorf("Stop calls %q", stops)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Serve returned: %v", err)
	}
}

// TestServeLimit: the 21st concurrent connection is closed at once, and a
// slot freed is usable again.
func TestServeLimit(t *testing.T) {
	s := &Server{Owner: os.Getuid(), Info: testInfo}
	path, _ := startServer(t, s)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range MaxConnections {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	extra, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatalf("connection over the limit: read %d, %v; want it closed", n, err)
	}
	idle[0].Close()
	idle = idle[1:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := Query(context.Background(), path, "info")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after one connection closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeCancel: cancelling ends Serve, closes open connections and
// removes the socket.
func TestServeCancel(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir, "h", 7)
	l, err := Listen(path, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Owner: os.Getuid(), Info: testInfo, closeGrace: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, l) }()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The server reads the hello only after this connection was accepted.
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after cancel")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("open connection not closed by cancel")
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// TestServeConn6x: a 6.x client (nested caps, rencodeplus) gets info in
// 6.x's nested shape and the 6.x version; a 3.1 client the same info as
// it was (a nested "proxy" with dotted keys inside, as 3.1.3's proxy
// adds it) and the 3.1 version.
func TestServeConn6x(t *testing.T) {
	info := func() value.Dict {
		return value.Dict{{Key: "proxy", Value: value.Dict{{Key: "pid", Value: int64(7)}, {Key: "bytes.to-client", Value: int64(5)}}}}
	}
	six := []value.Item{{Key: "version", Value: "6.5"}, {Key: "encoders", Value: []any{"rencodeplus"}},
		{Key: "rencode", Value: false}, {Key: "bencode", Value: false}}
	cases := []struct {
		name  string
		hello value.Dict
		want  conn.Packet
	}{
		{"6.x info", hello("info", six...), conn.Packet{packet.Hello, value.Dict{{Key: "proxy", Value: value.Dict{
			{Key: "pid", Value: int64(7)}, {Key: "bytes", Value: value.Dict{{Key: "to-client", Value: int64(5)}}}}}}}},
		{"6.x version", hello("version", six...), conn.Packet{packet.Hello, value.Dict{{Key: "version", Value: "6.5.3-test"}}}},
		{"3.1 info", hello("info"), conn.Packet{packet.Hello, info()}},
		{"3.1 version", hello("version"), conn.Packet{packet.Hello, value.Dict{{Key: "version", Value: "3.1.3-test"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := socketPair(t)
			defer cli.Close()
			s := &Server{Owner: os.Getuid(), Info: info, Version: "3.1.3-test", Version6: "6.5.3-test"}
			errc := make(chan error, 1)
			go func() {
				err := s.serveConn(srv)
				srv.Close()
				errc <- err
			}()
			if _, err := cli.Write(encode(t, conn.Packet{packet.Hello, tc.hello})); err != nil {
				t.Fatal(err)
			}
			if err := cli.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, cli)
			if err := <-errc; err != nil {
				t.Errorf("serveConn: %v", err)
			}
			if !samePackets(got, []conn.Packet{tc.want}) {
				t.Errorf("server sent %v, want %v", got, tc.want)
			}
		})
	}
}
