// SPDX-License-Identifier: GPL-2.0-or-later

package wire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/shared"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHeaderVectors(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want Header
		enc  Encoding
	}{
		{"TV4 ping rencode", "50 01 00 00 00 00 00 09", Header{Flags: 1, Size: 9}, Rencode},
		{"TV5 lz4 level 1", "50 01 11 00 00 00 00 25", Header{Flags: 1, Level: 0x11, Size: 37}, Rencode},
		{"TV8 rencode+cipher", "50 03 00 00 00 00 00 09", Header{Flags: 3, Size: 9}, Rencode},
		{"TV10 raw chunk", "50 00 00 02 00 00 13 88", Header{Index: 2, Size: 5000}, Bencode},
		{"TV10 6.x main", "50 18 00 00 00 00 00 09", Header{Flags: 0x18, Size: 9}, RencodePlus},
		{"real 3.1.3 server lz4 level 3", "50 01 13 00 00 00 33 1f", Header{Flags: 1, Level: 0x13, Size: 0x331f}, Rencode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := unhex(t, tt.wire)
			h, err := ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if h != tt.want {
				t.Fatalf("got %v, want %v", h, tt.want)
			}
			if h.Encoding() != tt.enc {
				t.Errorf("encoding %v, want %v", h.Encoding(), tt.enc)
			}
			if got := AppendHeader(nil, h); !bytes.Equal(got, b) {
				t.Errorf("AppendHeader = % x, want % x", got, b)
			}
		})
	}
}

func TestHeaderErrors(t *testing.T) {
	tests := []struct {
		name, wire, want string
	}{
		{"bad magic", "51 01 00 00 00 00 00 09", "invalid packet header byte 0x51"},
		{"over 256 MiB", "50 01 00 00 10 00 00 01", "exceeds the absolute maximum"},
		{"short", "50 01 00", "short chunk header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHeader(unhex(t, tt.wire))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		setup func(*Reader)
		want  error
		text  string
	}{
		{"too large for the limit", unhex(t, "50 01 00 00 01 00 00 01"), nil, ErrTooLarge, "maximum allowed is 16777216"},
		{"index above the 6.x limit", unhex(t, "50 00 00 10 00 00 00 01 00"), func(r *Reader) { r.SetMaxIndex(MaxIndexV6) }, ErrInvalidHeader, "chunk index 16"},
		{"cipher bit without cipher", unhex(t, "50 03 00 00 00 00 00 01 00"), nil, ErrCipher, "no cipher configured"},
		{"truncated payload", unhex(t, "50 01 00 00 00 00 00 09 c2 84"), nil, io.ErrUnexpectedEOF, "after 2 of 9 bytes"},
		{"truncated header", unhex(t, "50 01 00"), nil, ErrInvalidHeader, "inside a chunk header"},
		{"garbage after the first frame", append(unhex(t, "50 01 00 00 00 00 00 01 05"), "hello"...), nil, ErrInvalidHeader, "0x68"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.input))
			if tt.setup != nil {
				tt.setup(r)
			}
			var err error
			for err == nil {
				_, err = r.ReadFrame()
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.want, tt.text)
			}
		})
	}
}

// A caller that takes a payload itself (ReadHeader, PeekBuffered and
// Discard, then the stream underneath) leaves the reader at the next frame, whether the
// payload was wholly, partly or not at all buffered.
func TestReadHeaderTakeBuffered(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"inside the buffer", 1000},
		{"larger than the buffer", 300 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := bytes.Repeat([]byte{0xa5, 0x5a, 0x01}, tt.size/3+1)[:tt.size]
			var stream []byte
			stream = AppendHeader(stream, Header{Index: 1, Size: uint32(tt.size)})
			stream = append(stream, payload...)
			stream = AppendHeader(stream, Header{Flags: FlagRencode, Size: 3})
			stream = append(stream, 1, 2, 3)
			under := bytes.NewReader(stream)
			r := NewReader(under)
			h, n, err := r.ReadHeader()
			if err != nil || h.Index != 1 || n != tt.size {
				t.Fatalf("ReadHeader = %v, %d, %v", h, n, err)
			}
			got := make([]byte, n)
			head := r.PeekBuffered(n)
			k := copy(got, head)
			if len(head) > n || r.Buffered() < k {
				t.Fatalf("PeekBuffered returned %d bytes of a %d byte payload, %d buffered", len(head), n, r.Buffered())
			}
			if err := r.Discard(k); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(under, got[k:]); err != nil {
				t.Fatalf("rest of the payload from the stream: %v", err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatal("payload differs")
			}
			f, err := r.ReadFrame()
			if err != nil || f.Header.Index != 0 || !bytes.Equal(f.Payload, []byte{1, 2, 3}) {
				t.Fatalf("next frame %v %v, %v", f.Header, f.Payload, err)
			}
			if len(r.PeekBuffered(10)) != 0 {
				t.Fatal("PeekBuffered returned bytes at the end of the stream")
			}
		})
	}
}

// SetReadAhead only takes effect with nothing buffered, and frames read
// the same with a small read-ahead as with the default.
func TestSetReadAhead(t *testing.T) {
	var stream []byte
	for _, size := range []int{10, 5000, 40000} {
		stream = AppendHeader(stream, Header{Flags: FlagRencode, Size: uint32(size)})
		stream = append(stream, bytes.Repeat([]byte{byte(size)}, size)...)
	}
	r := NewReader(bytes.NewReader(stream))
	if _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() == 0 || r.SetReadAhead(4096) {
		t.Fatalf("SetReadAhead with %d bytes buffered took effect", r.Buffered())
	}
	for r.Buffered() > 0 {
		if _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}
	r = NewReader(bytes.NewReader(stream))
	if !r.SetReadAhead(4096) {
		t.Fatal("SetReadAhead with nothing buffered did not take effect")
	}
	for _, size := range []int{10, 5000, 40000} {
		f, err := r.ReadFrame()
		if err != nil || len(f.Payload) != size || !bytes.Equal(f.Payload, bytes.Repeat([]byte{byte(size)}, size)) {
			t.Fatalf("frame of %d bytes: %v, %v", size, f.Header, err)
		}
		if r.Buffered() > 4096 {
			t.Fatalf("%d bytes buffered with a 4096 byte read-ahead", r.Buffered())
		}
	}
}

// TV11: plain-text replies a 3.1.3 server sends before it parsed a hello.
func TestTextBeforeHello(t *testing.T) {
	tests := []struct {
		input, text, reason string
	}{
		{"disconnect: failed to parse bencode packet\n", "disconnect: failed to parse bencode packet", "failed to parse bencode packet"},
		{"disconnect: connection failed, invalid packet header, character 0x68, not an xpra client??\n",
			"disconnect: connection failed, invalid packet header, character 0x68, not an xpra client??",
			"connection failed, invalid packet header, character 0x68, not an xpra client??"},
		{"HTTP/1.1 400 Bad request syntax or unsupported method\n\n<head>", "HTTP/1.1 400 Bad request syntax or unsupported method", ""},
		{"no", "no", ""},
		{strings.Repeat("x", 5000), strings.Repeat("x", MaxTextLine), ""},
	}
	for _, tt := range tests {
		_, err := NewReader(strings.NewReader(tt.input)).ReadFrame()
		var tm *TextMessage
		if !errors.As(err, &tm) {
			t.Fatalf("%q: err = %v, want a TextMessage", tt.input, err)
		}
		if tm.Text != tt.text {
			t.Errorf("text = %q, want %q", tm.Text, tt.text)
		}
		reason, ok := tm.Disconnect()
		if ok != (tt.reason != "") || (ok && reason != tt.reason) {
			t.Errorf("Disconnect() = %q, %v; want %q", reason, ok, tt.reason)
		}
	}
}

// TV10: a raw chunk replaces the placeholder of the main chunk that follows.
func TestRawChunkSubstitution(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, 5000)
	var stream []byte
	stream = AppendHeader(stream, Header{Index: 2, Size: 5000})
	stream = append(stream, raw...)
	stream = append(stream, unhex(t, "50 01 00 00 00 00 00 08 c3 84 74657374 01 80")...)
	r := NewReader(bytes.NewReader(stream))
	var rc RawChunks
	f, err := r.ReadFrame()
	if err != nil || f.Header.Index != 2 || !bytes.Equal(f.Payload, raw) {
		t.Fatalf("raw frame: %v %v", f.Header, err)
	}
	if err := rc.Add(f.Header.Index, f.Payload); err != nil {
		t.Fatal(err)
	}
	if f, err = r.ReadFrame(); err != nil || f.Header.Index != 0 {
		t.Fatalf("main frame: %v %v", f.Header, err)
	}
	pkt := []any{[]byte("test"), int64(1), []byte{}} // what rencode decodes from the payload
	if err := rc.Apply(pkt); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pkt[2].([]byte), raw) || rc.Len() != 0 {
		t.Fatalf("substitution failed: %T len %d", pkt[2], rc.Len())
	}
}

func TestRawChunkLimits(t *testing.T) {
	var rc RawChunks
	for i := byte(1); i <= MaxPendingRaw; i++ {
		if err := rc.Add(i, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.Add(9, nil); err == nil || !strings.Contains(err.Error(), "too many raw packets") {
		t.Fatalf("4th raw chunk: %v", err)
	}
	rc.Reset()
	_ = rc.Add(1, nil)
	if err := rc.Add(1, nil); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("duplicate: %v", err)
	}
	if err := rc.Apply([]any{"x"}); err == nil {
		t.Fatal("index beyond the packet accepted")
	}
}

type jsonFrame struct {
	Offset    int    `json:"offset"`
	HeaderHex string `json:"header_hex"`
	Index     int    `json:"index"`
	Size      int    `json:"payload_size"`
}

// Every capture of real 3.1.3 traffic splits into exactly the frames its
// decoded dump lists, at the same offsets, with the same headers.
func TestTracesFrameBoundaries(t *testing.T) {
	dir := shared.Traces(t)
	dumps, err := filepath.Glob(filepath.Join(dir, "decoded", "*.frames.jsonl"))
	if err != nil || len(dumps) == 0 {
		t.Fatalf("no frame dumps in %s: %v", dir, err)
	}
	for _, dump := range dumps {
		name := strings.TrimSuffix(filepath.Base(dump), ".frames.jsonl")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, name+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			var want []jsonFrame
			jf, err := os.Open(dump)
			if err != nil {
				t.Fatal(err)
			}
			defer jf.Close()
			sc := bufio.NewScanner(jf)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var f jsonFrame
				if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
					t.Fatal(err)
				}
				want = append(want, f)
			}
			cr := &countingReader{r: bytes.NewReader(data)}
			r := NewReader(cr)
			for i, w := range want {
				off := cr.n - r.Buffered()
				f, err := r.ReadFrame()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if off != w.Offset {
					t.Errorf("frame %d at offset %d, dump says %d", i, off, w.Offset)
				}
				if got := hex.EncodeToString(AppendHeader(nil, f.Header)); got != w.HeaderHex {
					t.Errorf("frame %d header %s, dump says %s", i, got, w.HeaderHex)
				}
				if len(f.Payload) != w.Size {
					t.Errorf("frame %d payload %d bytes, dump says %d", i, len(f.Payload), w.Size)
				}
			}
			if _, err := r.ReadFrame(); err != io.EOF {
				t.Fatalf("after %d frames: %v, want EOF", len(want), err)
			}
		})
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func FuzzReadFrame(f *testing.F) {
	f.Add(unhex(f, "50 01 00 00 00 00 00 09 c2 84 70 69 6e 67 3f 03 e8"))
	f.Add(unhex(f, "50 00 00 02 00 00 00 03 01 02 03 50 01 00 00 00 00 00 01 05"))
	f.Add([]byte("disconnect: failed to parse bencode packet\n"))
	f.Add(unhex(f, "50 01 00 00 7f ff ff ff"))
	for _, data := range shared.TraceSeeds(f, "b1-info-password-ok.1.s2c.bin", "e1-attach-via-proxy.client-proxy.1.s2c.bin") {
		f.Add(data[:min(len(data), 40000)])
	}
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzcheck.Bounded(t, 2*limit+1<<20, func() {
			r := NewReader(bytes.NewReader(data))
			r.SetMaxSize(limit)
			var rc RawChunks
			total := 0
			for {
				fr, err := r.ReadFrame()
				if err != nil {
					return
				}
				if len(fr.Payload) > limit || len(fr.Payload) != int(fr.Header.Size) {
					t.Fatalf("payload %d bytes for %v (limit %d)", len(fr.Payload), fr.Header, limit)
				}
				total += HeaderSize + len(fr.Payload)
				if total > len(data) {
					t.Fatalf("read %d bytes of frames from %d bytes of input", total, len(data))
				}
				if fr.Header.Index > 0 {
					if rc.Add(fr.Header.Index, fr.Payload) != nil {
						return
					}
				} else {
					_ = rc.Apply(make([]any, 8))
				}
			}
		})
	})
}
