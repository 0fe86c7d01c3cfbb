// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/ipc"
)

// v2Header is what HAProxy's send-proxy-v2 sends for src → dst, with tlvs.
func v2Header(t testing.TB, src, dst string, tlvs ...proxyproto.TLV) []byte {
	t.Helper()
	s, d := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst))
	h := proxyproto.HeaderProxyFromAddrs(2, s, d)
	if len(tlvs) > 0 {
		if err := h.SetTLVs(tlvs); err != nil {
			t.Fatal(err)
		}
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// v2Raw is a v2 header with the given command, family byte and body.
func v2Raw(cmd, fam byte, body []byte) []byte {
	b := append([]byte(proxyproto.SIGV2), cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

// hello stands for the client's bytes behind the header: never read.
var hello = []byte("P\x01\x00\x00\x00\x00\x00\x10hello-of-the-client")

func TestReadProxyHeader(t *testing.T) {
	const peer = "127.0.0.9:40000" // the balancer
	tests := []struct {
		name   string
		in     []byte // the header; hello follows it
		source string // what ClaimedSource gives
		err    string // from ReadProxyHeader or ClaimedSource
	}{
		{"v1 TCP4", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 5000 14500\r\n"), "192.0.2.1:5000", ""},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 5000 14500\r\n"), "[2001:db8::1]:5000", ""},
		{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", ""},
		{"v1 UNKNOWN: the peer itself", []byte("PROXY UNKNOWN\r\n"), peer, ""},
		{"v2 TCP4", v2Header(t, "127.0.0.7:41000", "127.0.0.1:14500"), "127.0.0.7:41000", ""},
		{"v2 TCP6", v2Header(t, "[2001:db8::7]:41000", "[2001:db8::1]:14500"), "[2001:db8::7]:41000", ""},
		{"v2 IPv4-mapped source", v2Header(t, "[::ffff:192.0.2.7]:41000", "[2001:db8::1]:14500"), "192.0.2.7:41000", ""},
		{"v2 with TLVs", v2Header(t, "192.0.2.1:5000", "192.0.2.2:14500",
			proxyproto.TLV{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: bytes.Repeat([]byte{7}, 128)},
			proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte("xpra")}), "192.0.2.1:5000", ""},
		{"v2 LOCAL: the peer itself", v2Raw(0x20, 0x00, nil), peer, ""},
		{"v2 LOCAL with a body", v2Raw(0x20, 0x00, make([]byte, 12)), peer, ""},
		{"v2 UDP", v2Raw(0x21, 0x12, make([]byte, 12)), "", "not TCP over IP"},
		{"v2 unix", v2Raw(0x21, 0x31, make([]byte, 216)), "", "not TCP over IP"},
		{"v2 undefined family", v2Raw(0x21, 0x13, make([]byte, 12)), "", "malformed PROXY header"},
		{"v2 version 3", v2Raw(0x31, 0x11, make([]byte, 12)), "", "malformed PROXY header"},
		{"v2 address block too short", v2Raw(0x21, 0x11, make([]byte, 4)), "", "malformed PROXY header"},
		{"v2 over the budget", v2Raw(0x21, 0x11, make([]byte, MaxProxyHeader)), "", "over the budget"},
		{"v2 at the budget", v2Raw(0x21, 0x11, make([]byte, MaxProxyHeader-16)), "0.0.0.0:0", ""},
		{"v1 without its end", []byte("PROXY TCP4 " + strings.Repeat("1", 120)), "", "no end within 107 bytes"},
		{"v1 bad address", []byte("PROXY TCP4 192.0.2.999 192.0.2.2 5000 14500\r\n"), "", "malformed PROXY header"},
		{"v1 bad port", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 99999 14500\r\n"), "", "malformed PROXY header"},
		{"v1 TCP4 with an IPv6 address", []byte("PROXY TCP4 2001:db8::1 192.0.2.2 5000 14500\r\n"), "", "malformed PROXY header"},
		{"v1 LF only", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 5000 14500\n"), "", "malformed PROXY header"},
		{"v1 lower case", []byte("proxy TCP4 192.0.2.1 192.0.2.2 5000 14500\r\n"), "", "no PROXY protocol header"},
		{"no header: an xpra hello", nil, "", "no PROXY protocol header"},
		{"nothing at all", []byte{}, "", "closed before sending anything"}, // not even a hello: see below
		{"no header: TLS", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0}, "", "no PROXY protocol header"},
	}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":       func(r io.Reader) io.Reader { return r },
		"byte a time": iotest.OneByteReader,
	}
	for _, tc := range tests {
		for rname, wrap := range readers {
			t.Run(tc.name+"/"+rname, func(t *testing.T) {
				in := append(append([]byte{}, tc.in...), hello...)
				if tc.in != nil && len(tc.in) == 0 {
					in = nil // "nothing at all": not even the client's bytes
				}
				r := bytes.NewReader(in)
				h, raw, err := ReadProxyHeader(wrap(r))
				var src string
				if err == nil {
					src, err = ClaimedSource(h, peer)
				}
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("err %v, want %q", err, tc.err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if src != tc.source {
					t.Errorf("source %q, want %q", src, tc.source)
				}
				if !bytes.Equal(raw, tc.in) {
					t.Errorf("read %q, want the header %q", raw, tc.in)
				}
				// Not a byte of the client's: the relay gets the socket.
				if rest, _ := io.ReadAll(r); !bytes.Equal(rest, hello) {
					t.Errorf("left %q, want the client's bytes %q", rest, hello)
				}
			})
		}
	}
}

// TestReadProxyHeaderCutShort: a header that stops coming is an error,
// never a header.
func TestReadProxyHeaderCutShort(t *testing.T) {
	for _, in := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 192.0.2.2 5000 14500\r\n"),
		v2Header(t, "192.0.2.1:5000", "192.0.2.2:14500"),
	} {
		for n := range len(in) {
			if _, _, err := ReadProxyHeader(bytes.NewReader(in[:n])); err == nil {
				t.Errorf("%q cut at %d bytes: no error", in, n)
			}
		}
	}
}

// TestTakeProxyHeader runs the pre-auth side over a real TCP connection
// and a real ipc channel, with the test as the supervisor.
func TestTakeProxyHeader(t *testing.T) {
	tests := []struct {
		name    string
		send    []byte      // what the balancer sends
		reply   ipc.Message // the supervisor's word
		peer    string      // o.Peer afterwards
		told    string      // what the client reads
		err     string
		timeout time.Duration
	}{
		{"accepted", append(v2Header(t, "127.0.0.7:41000", "127.0.0.1:14500"), hello...), ipc.Message{Kind: ipc.ProxyAccepted},
			"127.0.0.7:41000", "", "", time.Second},
		{"penalised source is told", append([]byte("PROXY TCP4 127.0.0.7 127.0.0.1 41000 14500\r\n"), hello...),
			ipc.Message{Kind: ipc.Denied, Reason: "disconnect: too many failed logins from your address, wait 9 s and try again\n"},
			"127.0.0.7:41000", "disconnect: too many failed logins from your address, wait 9 s and try again\n", "refused by its source's limits", time.Second},
		{"refused source, TLS client: a bare close", append([]byte("PROXY TCP4 127.0.0.7 127.0.0.1 41000 14500\r\n"), 0x16, 3, 1),
			ipc.Message{Kind: ipc.Denied, Reason: "disconnect: too many failed logins from your address, wait 9 s and try again\n"},
			"127.0.0.7:41000", "", "refused by its source's limits", time.Second},
		{"rate refusal", append([]byte("PROXY TCP4 127.0.0.7 127.0.0.1 41000 14500\r\n"), hello...),
			ipc.Message{Kind: ipc.Denied, Reason: "per-source rate"}, "127.0.0.7:41000", "", "per-source rate", time.Second},
		{"no header", hello, ipc.Message{}, "", "", "no PROXY protocol header", time.Second},
		{"silent balancer", nil, ipc.Message{}, "", "", "within proxy-protocol-timeout (200ms)", 200 * time.Millisecond},
		{"header stops half-way", []byte("PROXY TCP4 127.0.0.7"), ipc.Message{}, "", "", "PROXY v1 header cut short", 200 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
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
			if _, err := client.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			asked := make(chan ipc.Message, 1)
			go func() {
				m, _, _, err := sup.Recv()
				if err != nil {
					return
				}
				asked <- m
				_ = sup.Send(tc.reply, nil)
			}()
			o := Options{Peer: "127.0.0.1:50000", Proxied: true, ProxyTimeout: tc.timeout, LoginTimeout: 10 * time.Second, Log: slog.New(slog.DiscardHandler)}
			err = takeProxyHeader(server, child, &o)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
			if tc.reply.Kind != "" {
				m := <-asked
				if m.Kind != ipc.ProxyHeader || m.Peer != "127.0.0.7:41000" {
					t.Errorf("asked %+v", m)
				}
			}
			if tc.peer != "" && tc.err == "" && o.Peer != tc.peer {
				t.Errorf("peer %q, want %q", o.Peer, tc.peer)
			}
			if tc.err == "" {
				// The client's own bytes stay for the next stage.
				rest := make([]byte, len(hello))
				_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(server, rest); err != nil || !bytes.Equal(rest, hello) {
					t.Errorf("after the header the stage reads %q, %v; want the client's %q", rest, err, hello)
				}
			}
			server.Close()
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _ := io.ReadAll(client)
			if string(got) != tc.told {
				t.Errorf("the client read %q, want %q", got, tc.told)
			}
		})
	}
}

// tcpPair is a real loopback TCP connection: client and server ends.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// FuzzProxyHeader feeds arbitrary first bytes from a trusted balancer to
// the header path as the pre-auth process runs it: our framing and
// budget around go-proxyproto's parser, then the source taken from it.
// It must never read past the budget or the header, never allocate much,
// and only yield sources that are addresses with ports.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 5000 14500\r\nP\x01"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 5000 14500\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY TCP4 " + strings.Repeat("9", 100) + "\r\n"))
	f.Add(v2Header(f, "127.0.0.7:41000", "127.0.0.1:14500"))
	f.Add(v2Header(f, "[2001:db8::7]:41000", "[2001:db8::1]:14500"))
	f.Add(v2Header(f, "192.0.2.1:5000", "192.0.2.2:14500",
		proxyproto.TLV{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: []byte("id")},
		proxyproto.TLV{Type: proxyproto.PP2_TYPE_SSL, Value: []byte{1, 0, 0, 0, 0}}))
	f.Add(v2Raw(0x20, 0x00, nil))
	f.Add(v2Raw(0x21, 0x31, make([]byte, 216)))
	f.Add(v2Raw(0x21, 0x11, make([]byte, 5000)))
	f.Add(hello)
	f.Add([]byte{0x16, 0x03, 0x01, 0x02, 0x00})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, 64<<10, func() {
			r := bytes.NewReader(in)
			h, raw, err := ReadProxyHeader(r)
			read := len(in) - r.Len()
			if read > MaxProxyHeader {
				t.Fatalf("read %d bytes, over the budget", read)
			}
			if err != nil {
				if h != nil {
					t.Fatal("a header with an error")
				}
				return
			}
			if !bytes.Equal(raw, in[:read]) {
				t.Fatalf("raw %q is not what was read, %q", raw, in[:read])
			}
			src, err := ClaimedSource(h, "127.0.0.9:40000")
			if err != nil {
				return
			}
			if _, err := netip.ParseAddrPort(src); err != nil {
				t.Fatalf("source %q: %v", src, err)
			}
		})
	})
}
