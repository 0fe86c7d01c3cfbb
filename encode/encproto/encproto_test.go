// SPDX-License-Identifier: GPL-2.0-or-later

package encproto

import (
	"bytes"
	"errors"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
)

func TestRequestRoundTrip(t *testing.T) {
	for _, req := range []Request{
		Hello{Version: 1},
		Open{Codec: codec.H264, Format: codec.BGRX, Width: 1920, Height: 1080, Quality: 80, Speed: 60, Profile: "high"},
		Open{Codec: codec.JPEG, Format: codec.RGB, Width: 3, Height: 5, CPUOnly: true},
		Compress{Ctx: 7, Stride: 7680, Offset: 1 << 33, Keyframe: true, Quality: -1, Speed: 40},
		Close{Ctx: 0xFFFFFFFF},
		Status{},
		StatsRequest{},
	} {
		body, typ, err := AppendRequest(nil, req)
		if err != nil {
			t.Fatal(err)
		}
		fds := uint8(0)
		if typ == TCompress {
			fds = 1
		}
		raw := AppendHeader(nil, Header{Type: typ, Fds: fds, Seq: 42, Len: uint32(len(body))})
		h, err := ParseHeader(raw)
		if err != nil || h.Seq != 42 || h.Type != typ {
			t.Fatalf("%T: header %+v %v", req, h, err)
		}
		got, err := ParseRequest(h, body)
		if err != nil || !reflect.DeepEqual(got, req) {
			t.Fatalf("%T: got %#v %v", req, got, err)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, rep := range []Reply{
		HelloReply{Version: 1, Codecs: []codec.Codec{codec.H264, codec.JPEG}, MaxWidth: 4096, MaxHeight: 2160, Note: "no GPU"},
		Opened{Ctx: 3, Backend: X264, GPU: -1, Fallback: "no GPU: NVML library not found"},
		Opened{Ctx: 4, Backend: NVENC, GPU: 1},
		Compressed{Keyframe: true, Data: []byte{0, 0, 0, 1, 0x67}},
		Closed{},
		StatusReply{JSON: []byte(`{"cpu":1}`)},
		sampleStats(),
		StatsReply{},
		&Error{Code: Refused, Message: "pool full"},
	} {
		body, typ, err := AppendReply(nil, rep)
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := rep.(Compressed); ok {
			body = append(body, c.Data...)
		}
		got, err := ParseReply(Header{Type: typ, Len: uint32(len(body))}, body)
		if err != nil || !reflect.DeepEqual(got, rep) {
			t.Fatalf("%T: got %#v %v", rep, got, err)
		}
	}
}

func hdr(typ Type, fds uint8, n uint32) []byte {
	return AppendHeader(nil, Header{Type: typ, Fds: fds, Len: n})
}

func sampleStats() StatsReply {
	v := StatsReply{Start: 1700000000, Conns: 3, Contexts: 2, InFlight: 1, OpensRefused: 5}
	v.Frames[X264][FrameOK] = 1 << 40
	v.Frames[JPEG][FrameFailed] = 2
	v.Frames[0][FrameRejected] = 7
	v.Frames[NVENC][FrameOK] = ^uint64(0)
	return v
}

// A stats reply has one length: shorter or longer is a peer we do not
// understand.
func TestStatsReplyLength(t *testing.T) {
	body, typ, err := AppendReply(nil, sampleStats())
	if err != nil || typ != TStatsReply || len(body) != StatsSize {
		t.Fatalf("%v %d bytes %v, want %d", typ, len(body), err, StatsSize)
	}
	for _, b := range [][]byte{body[:StatsSize-1], append(body, 0), nil} {
		if _, err := ParseReply(Header{Type: TStatsReply, Len: uint32(len(b))}, b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%d bytes: %v", len(b), err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte // header
		body []byte
		want string
	}{
		{"short header", []byte("XE\x01"), nil, "short header"},
		{"bad magic", append([]byte("GE"), hdr(THello, 0, 2)[2:]...), nil, "bad magic"},
		{"unknown type", hdr(0x42, 0, 0), nil, "unknown message type"},
		{"fd on hello", hdr(THello, 1, 2), nil, "hello with 1 descriptors"},
		{"compress without fd", hdr(TCompress, 0, 19), nil, "compress with 0 descriptors"},
		{"compress with two", hdr(TCompress, 2, 19), nil, "compress with 2 descriptors"},
		{"huge request", hdr(TOpen, 0, MaxRequestBody+1), nil, "exceeds 1024"},
		{"huge reply", hdr(TCompressed, 0, MaxReplyBody+1), nil, "exceeds"},
		{"reply as request", hdr(TOpened, 0, 0), []byte{}, "not a request"},
		{"short open", hdr(TOpen, 0, 3), []byte{1, 1, 0}, "too short"},
		{"trailing bytes", hdr(TClose, 0, 5), []byte{1, 0, 0, 0, 9}, "1 trailing bytes"},
		{"open flags", hdr(TOpen, 0, 11), []byte{1, 1, 64, 0, 64, 0, 50, 50, 2, 0, 0}, "unknown open flags"},
		{"long profile", hdr(TOpen, 0, 28), append([]byte{1, 1, 64, 0, 64, 0, 50, 50, 0, 17, 0}, bytes.Repeat([]byte("a"), 17)...), "exceeds 16"},
		{"compress flags", hdr(TCompress, 1, 19), append(make([]byte, 16), 4, 0, 0), "unknown compress flags"},
		{"length mismatch", hdr(THello, 0, 2), []byte{1}, "header says 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHeader(tc.raw)
			if err == nil {
				_, err = ParseRequest(h, tc.body)
			}
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzRequest: the worker's parser of everything a client sends. No
// input may panic or allocate beyond the request limit.
func FuzzRequest(f *testing.F) {
	for _, req := range []Request{Hello{1}, Open{Codec: 1, Format: 1, Width: 64, Height: 64, Profile: "main"}, Compress{Ctx: 1, Stride: 256}, Close{1}, Status{}, StatsRequest{}} {
		body, typ, _ := AppendRequest(nil, req)
		fds := uint8(0)
		if typ == TCompress {
			fds = 1
		}
		f.Add(append(hdr(typ, fds, uint32(len(body))), body...))
	}
	f.Add([]byte("XE\xff\x00\x00\x00\x00\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// 64 KiB: the request limit plus fmt and runtime noise; a length
		// taken from the header unchecked would show as up to 4 GiB.
		fuzzcheck.Bounded(t, 64<<10, func() {
			h, err := ParseHeader(data)
			if err != nil {
				return
			}
			body := data[HeaderSize:]
			if uint32(len(body)) > h.Len {
				body = body[:h.Len]
			}
			req, err := ParseRequest(h, body)
			if err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("unexpected error kind %v", err)
				}
				return
			}
			// What parses re-encodes to the same bytes.
			again, typ, err := AppendRequest(nil, req)
			if err != nil || typ != h.Type || !bytes.Equal(again, body) {
				t.Fatalf("%#v re-encodes as %v %x (%v), was %x", req, typ, again, err, body)
			}
		})
	})
}

func pair(t *testing.T) (*Conn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conv(fds[0]), conv(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	a.SetDeadline(time.Now().Add(5 * time.Second))
	return NewConn(a), b
}

func openFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func memfd(t *testing.T) int {
	fd, err := unix.MemfdCreate("t", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// What a peer may send around descriptors (SECURITY-TESTS 19): each bad
// case is a protocol error and leaves no received descriptor open.
func TestConnDescriptors(t *testing.T) {
	compress, _, _ := AppendRequest(nil, Compress{Ctx: 1, Stride: 256})
	hello, _, _ := AppendRequest(nil, Hello{1})
	msg := func(typ Type, fds uint8, body []byte) []byte {
		return append(hdr(typ, fds, uint32(len(body))), body...)
	}
	for _, tc := range []struct {
		name   string
		chunks [][]byte // written in order; the descriptors ride on chunk at
		nfds   int
		at     int
		want   string // "" for success
	}{
		{name: "compress with one", chunks: [][]byte{msg(TCompress, 1, compress)}, nfds: 1},
		{name: "descriptor on the body bytes", chunks: [][]byte{msg(TCompress, 1, compress)[:HeaderSize], compress}, nfds: 1, at: 1},
		{name: "compress without", chunks: [][]byte{msg(TCompress, 1, compress)}, want: "0 descriptors, header says 1"},
		{name: "two", chunks: [][]byte{msg(TCompress, 1, compress)}, nfds: 2, want: "2 descriptors"},
		{name: "250", chunks: [][]byte{msg(TCompress, 1, compress)}, nfds: 250, want: "descriptors"},
		{name: "on a hello", chunks: [][]byte{msg(THello, 0, hello)}, nfds: 1, want: "1 descriptors, header says 0"},
		{name: "garbage", chunks: [][]byte{[]byte("GET / HTTP/1.1\r\n")}, nfds: 1, want: "bad magic"},
		{name: "cut short", chunks: [][]byte{msg(TCompress, 1, compress)[:15]}, nfds: 1, want: "mid-message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := openFds(t)
			c, peer := pair(t)
			var sent []int
			for i := 0; i < tc.nfds; i++ {
				sent = append(sent, memfd(t))
			}
			for i, chunk := range tc.chunks {
				var oob []byte
				if i == tc.at && len(sent) > 0 {
					oob = unix.UnixRights(sent...)
				}
				if _, _, err := peer.WriteMsgUnix(chunk, oob, nil); err != nil && tc.nfds < 250 {
					t.Fatal(err)
				}
			}
			for _, fd := range sent {
				unix.Close(fd)
			}
			peer.CloseWrite()
			h, body, fd, err := c.Read(MaxRequestBody)
			if tc.want == "" {
				if err != nil || fd < 0 || h.Type != TCompress || !bytes.Equal(body, compress) {
					t.Fatalf("%+v %x fd=%d %v", h, body, fd, err)
				}
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil {
					t.Fatal(err)
				}
				unix.Close(fd)
			} else if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			c.Close()
			peer.Close()
			if after := openFds(t); after > before {
				t.Fatalf("%d descriptors open before, %d after", before, after)
			}
		})
	}
}

func TestConnWrite(t *testing.T) {
	c, peer := pair(t)
	pc := NewConn(peer)
	fd := memfd(t)
	defer unix.Close(fd)
	body, typ, _ := AppendRequest(nil, Compress{Ctx: 9, Stride: 100})
	// A Conn takes one writer at a time (its write buffer is reused):
	// the last write below waits for this one to return.
	written := make(chan error, 1)
	go func() {
		if err := c.Write(typ, 5, body, nil, fd); err != nil {
			written <- err
			return
		}
		big := bytes.Repeat([]byte{7}, 3<<20) // larger than any socket buffer
		rep, rtyp, _ := AppendReply(nil, Compressed{Keyframe: true})
		written <- c.Write(rtyp, 6, rep, big, -1)
	}()
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	h, got, rfd, err := pc.Read(MaxRequestBody)
	if err != nil || h.Seq != 5 || !bytes.Equal(got, body) || rfd < 0 {
		t.Fatalf("%+v %v fd=%d", h, err, rfd)
	}
	unix.Close(rfd)
	h, got, _, err = pc.Read(MaxReplyBody)
	if err != nil || h.Seq != 6 {
		t.Fatal(h, err)
	}
	rep, err := ParseReply(h, got)
	if err != nil || len(rep.(Compressed).Data) != 3<<20 || !rep.(Compressed).Keyframe {
		t.Fatal(err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	// A reply larger than the reader's limit is refused, not read.
	go c.Write(TCompressed, 7, []byte{0}, make([]byte, 100), -1)
	if _, _, _, err := pc.Read(50); !errors.Is(err, ErrProtocol) {
		t.Fatal(err)
	}
}

// FuzzReply: the relay's parser of what the shared encoder answers (the
// encoder runs as a user of its own, so a relay must not trust it). No
// input may panic or allocate beyond the reply's own bytes, and what
// parses re-encodes to the same bytes.
func FuzzReply(f *testing.F) {
	for _, rep := range []Reply{
		HelloReply{Version: 1, Codecs: []codec.Codec{codec.H264, codec.JPEG}, MaxWidth: 4096, MaxHeight: 2160, Note: "no GPU"},
		Opened{Ctx: 3, Backend: X264, GPU: -1, Fallback: "no GPU"},
		Compressed{Keyframe: true, Data: []byte{0, 0, 0, 1, 0x67}},
		Closed{}, StatusReply{JSON: []byte(`{"cpu":1}`)}, &Error{Code: Refused, Message: "pool full"}, sampleStats(),
	} {
		body, typ, _ := AppendReply(nil, rep)
		if c, ok := rep.(Compressed); ok {
			body = append(body, c.Data...)
		}
		f.Add(append(hdr(typ, 0, uint32(len(body))), body...))
	}
	f.Add(append(hdr(THelloReply, 0, 4), 1, 0, 9, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzcheck.Bounded(t, 64<<10, func() {
			h, err := ParseHeader(data)
			if err != nil {
				return
			}
			body := data[HeaderSize:]
			if uint32(len(body)) > h.Len {
				body = body[:h.Len]
			}
			rep, err := ParseReply(h, body)
			if err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("unexpected error kind %v", err)
				}
				return
			}
			again, typ, err := AppendReply(nil, rep)
			if c, ok := rep.(Compressed); ok {
				again = append(again, c.Data...)
			}
			if err != nil || typ != h.Type || !bytes.Equal(again, body) {
				t.Fatalf("%#v re-encodes as %v %x (%v), was %x", rep, typ, again, err, body)
			}
		})
	})
}
