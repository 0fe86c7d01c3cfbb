// SPDX-License-Identifier: GPL-2.0-or-later

package conn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// dumpFrame is one line of traces/decoded/*.frames.jsonl, written by the
// lab's Python decoder (python3-rencode, xpra's bencode).
type dumpFrame struct {
	Offset int    `json:"offset"`
	Index  int    `json:"index"`
	Type   string `json:"type"`
	Items  int    `json:"items"`
	Keys   int    `json:"keys"`
	Error  string `json:"error"`
}

func readDump(t *testing.T, path string) []dumpFrame {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dumpFrame
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d dumpFrame
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, d)
	}
	return out
}

// helloAliases returns the alias table of the first hello in a capture
// that carries one (a client with a password sends a minimal hello first):
// what its sender told the other side it may use.
func helloAliases(t testing.TB, path string) packet.Aliases {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := New(rw{bytes.NewReader(data), io.Discard})
	c.SetAnnouncedAliases(packet.NewAliases("hello"))
	for {
		p, err := c.ReadPacket()
		if err != nil {
			// Packets after the table may use integers we cannot map here.
			return packet.Aliases{}
		}
		if p[0] != packet.Hello {
			continue
		}
		d, _ := p[1].(value.Dict)
		av, ok := d.Get("aliases")
		if !ok {
			continue
		}
		a, err := packet.ParseAliases(av)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return a
	}
}

// uniqueKeys counts distinct keys as Python sees them. The reference proxy
// sends hellos holding the same key twice (once from a str, once from a
// bytes key); Python's decoder keeps one, our Dict keeps both so the packet
// re-encodes byte for byte.
func uniqueKeys(d value.Dict) int {
	seen := map[string]bool{}
	for _, it := range d {
		k, _ := value.AsString(it.Key)
		seen[k] = true
	}
	return len(seen)
}

type rw struct {
	io.Reader
	io.Writer
}

// Every capture of real xpra 3.1.3 traffic decodes completely through Conn
// (framing, lz4/zlib, rencode or bencode, raw chunks, integer aliases), and
// each packet matches the Python decoder's dump: type, alias, item count and
// hello key count.
func TestTracesDecode(t *testing.T) {
	dir := shared.Traces(t)
	dumps, _ := filepath.Glob(filepath.Join(dir, "decoded", "*.frames.jsonl"))
	if len(dumps) < 20 {
		t.Fatalf("only %d frame dumps in %s", len(dumps), dir)
	}
	for _, dump := range dumps {
		name := strings.TrimSuffix(filepath.Base(dump), ".frames.jsonl")
		t.Run(name, func(t *testing.T) {
			peer := strings.Replace(name, ".c2s", ".s2c", 1)
			if peer == name {
				peer = strings.Replace(name, ".s2c", ".c2s", 1)
			}
			want := readDump(t, dump)
			data, err := os.ReadFile(filepath.Join(dir, name+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			c := New(rw{bytes.NewReader(data), io.Discard})
			// The other direction's hello says which integers this one may use.
			announced := helloAliases(t, filepath.Join(dir, peer+".bin"))
			c.SetAnnouncedAliases(announced)
			var packets []dumpFrame
			for _, w := range want {
				if w.Index == 0 {
					packets = append(packets, w)
				}
			}
			for i, w := range packets {
				p, err := c.ReadPacket()
				if err != nil {
					t.Fatalf("packet %d (%s at %d): %v", i, w.Type, w.Offset, err)
				}
				wantType, alias := w.Type, ""
				if k := strings.Index(wantType, "(alias "); k >= 0 {
					wantType, alias = wantType[:k], wantType[k:]
				}
				if wantType == "?" {
					wantType = "hello" // the dump tool lacked the peer's table; see below
				}
				if p[0] != wantType {
					t.Errorf("packet %d at %d: type %v, dump says %s%s", i, w.Offset, p[0], wantType, alias)
				}
				if len(p) != w.Items && w.Items != 0 {
					t.Errorf("packet %d (%s): %d items, dump says %d", i, w.Type, len(p), w.Items)
				}
				if w.Keys != 0 {
					d, _ := p[1].(value.Dict)
					if uniqueKeys(d) != w.Keys {
						t.Errorf("packet %d (%s): %d keys, dump says %d", i, w.Type, uniqueKeys(d), w.Keys)
					}
				}
			}
			if _, err := c.ReadPacket(); err != io.EOF {
				t.Fatalf("after %d packets: %v, want EOF", len(packets), err)
			}
		})
	}
}

// The frames of a capture re-encode to the same bytes: same encoder, same
// compression algorithm and level, raw chunks as they came. Compressed bytes
// depend on the library, so compressed frames are compared after
// decompression (PROTOCOL.md §10, TV5).
func TestTracesReencode(t *testing.T) {
	dir := shared.Traces(t)
	files, _ := filepath.Glob(filepath.Join(dir, "[a-e]*.bin"))
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r := wire.NewReader(bytes.NewReader(data))
			n := 0
			for {
				f, err := r.ReadFrame()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if f.Header.Index != 0 {
					continue
				}
				payload := f.Payload
				if f.Header.Level != 0 {
					if payload, err = compress.Decompress(f.Header.Level, payload, wire.AbsMaxSize); err != nil {
						t.Fatal(err)
					}
				}
				p, err := Decode(f.Header.Encoding(), payload)
				if err != nil {
					t.Fatalf("frame %d: %v", n, err)
				}
				again, err := Encode(nil, f.Header.Encoding(), p)
				if err != nil {
					t.Fatalf("frame %d: %v", n, err)
				}
				if !bytes.Equal(again, payload) {
					t.Fatalf("frame %d (%v): re-encoding differs (%d vs %d bytes)", n, p[0], len(again), len(payload))
				}
				n++
			}
			if n == 0 {
				t.Fatal("no packets")
			}
		})
	}
}

// A packet written by Conn reads back the same, for each encoder, with and
// without compression, with a raw chunk.
func TestWriteReadRoundTrip(t *testing.T) {
	pixels := bytes.Repeat([]byte{1, 2, 3, 4}, RawChunkSize/2)
	pkt := Packet{"draw", int64(1), int64(0), int64(0), int64(164), int64(164), "webp", pixels, int64(7), int64(656),
		value.Dict{{Key: "flush", Value: int64(0)}}}
	for _, enc := range []wire.Encoding{wire.Rencode, wire.RencodePlus, wire.Bencode} {
		for _, algo := range []compress.Algo{compress.None, compress.LZ4, compress.Zlib, compress.Brotli} {
			t.Run(fmt.Sprintf("%v/%v", enc, algo), func(t *testing.T) {
				var buf bytes.Buffer
				w := New(rw{nil, &buf})
				if err := w.SetEncoding(enc); err != nil {
					t.Fatal(err)
				}
				w.SetCompression(algo, 3)
				big := Packet{"hello", value.Dict{{Key: "padding", Value: strings.Repeat("x", 2000)}}}
				for _, p := range []Packet{pkt, big} {
					if err := w.WritePacket(p); err != nil {
						t.Fatal(err)
					}
				}
				if buf.Bytes()[3] != 7 {
					t.Fatalf("pixels did not go first as raw chunk 7: header % x", buf.Bytes()[:8])
				}
				r := New(rw{&buf, io.Discard})
				for _, want := range []Packet{pkt, big} {
					got, err := r.ReadPacket()
					if err != nil {
						t.Fatal(err)
					}
					if !value.Equal(got, want, true) {
						t.Fatalf("read back %v", got[:min(len(got), 7)])
					}
				}
			})
		}
	}
}
