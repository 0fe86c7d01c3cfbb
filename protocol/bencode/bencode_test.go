// SPDX-License-Identifier: GPL-2.0-or-later

package bencode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func TestEncodeDecode(t *testing.T) {
	tests := []struct {
		name    string
		v       any
		wire    string
		decoded any // what Decode gives back, when not v
	}{
		{"int", int64(42), "i42e", nil},
		{"negative", int64(-7), "i-7e", nil},
		{"bool", true, "i1e", int64(1)},
		{"bytes", []byte("ab"), "2:ab", nil},
		{"text", "hello", "5:hello", []byte("hello")},
		{"list", []any{int64(1), []byte("x")}, "li1e1:xe", nil},
		{"dict keeps order", value.Dict{{Key: []byte("z"), Value: int64(1)}, {Key: []byte("a"), Value: int64(2)}}, "d1:zi1e1:ai2ee", nil},
		{"hello", []any{[]byte("hello"), value.Dict{{Key: []byte("version"), Value: []byte("3.1.3")}}}, "l5:hellod7:version5:3.1.3ee", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.wire {
				t.Fatalf("Encode = %q, want %q", got, tc.wire)
			}
			back, err := Decode(got)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.decoded
			if want == nil {
				want = tc.v
			}
			if !value.Equal(back, want, false) {
				t.Fatalf("Decode = %#v, want %#v", back, want)
			}
		})
	}
}

func TestDecodeUnicode(t *testing.T) {
	v, err := Decode([]byte("u3:\xc3\xa9t"))
	if err != nil || v != "ét" {
		t.Fatalf("got %#v, %v", v, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, in := range []string{"", "i12", "ie", "i1x2e", "i+1e", "l", "li1e", "d1:a", "d", "5:abc", "x", "3", "3x", "i1ei2e",
		"dli1eei1ee", "i" + strings.Repeat("9", 70) + "e", "99999999999:a", strings.Repeat("l", MaxDepth+2)} {
		if v, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%q) = %#v, want an error", in, v)
		}
	}
	if _, err := Decode([]byte("i1ei2e")); !errors.Is(err, ErrTrailing) {
		t.Errorf("want ErrTrailing, got %v", err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, v := range []any{nil, 1.5, float32(1)} {
		if _, err := Encode(v); err == nil {
			t.Errorf("Encode(%#v) succeeded", v)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"l5:hellod7:version5:3.1.3ee", "li-1ei99999999999999999999999ee", "u2:\xc3\xa9", "d1:ali1eee"} {
		f.Add([]byte(s))
	}
	// Issue 12's amplification (empty lists) and deep nesting.
	f.Add([]byte("l5:hellod1:xl" + strings.Repeat("le", 64<<10) + "eee"))
	f.Add([]byte("l5:hellod1:x" + strings.Repeat("l", 120) + strings.Repeat("e", 122)))
	// The real HTML5 client's packets and the proxy's answers (f1, the
	// xpra stream inside its WebSocket frames): hellos of 1-7 KB.
	for _, stream := range shared.TraceSeeds(f, "decoded/f1-html5-ws-via-proxy.client-proxy.*.unframed.bin") {
		for _, p := range bencodePayloads(stream) {
			f.Add(p)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, fuzzLimit, func() {
			v, err := DecodeWithin(in, budget.New(fuzzBudget))
			if err != nil {
				return
			}
			out, err := Encode(v)
			if err != nil {
				t.Fatalf("re-encoding: %v", err)
			}
			back, err := Decode(out)
			if err != nil {
				t.Fatalf("decoding our own %q: %v", out, err)
			}
			// "u" strings come back as bytes: compare loosely.
			if !value.Equal(v, back, true) {
				again, _ := Encode(back)
				if !bytes.Equal(out, again) {
					t.Fatalf("round trip changed %#v into %#v", v, back)
				}
			}
		})
	})
}

// fuzzLimit is the packet limit the fuzz target holds the parser to: fuzz
// inputs are far smaller than a packet, so any allocation this large
// would mean a size taken from the input rather than from its length.
const fuzzLimit = 1 << 20

// fuzzBudget leaves room within fuzzLimit for the round trip after a
// decode that succeeds.
var fuzzBudget = budget.Limits{Bytes: fuzzLimit / 4, Items: 16 << 10, Depth: 32}

// DecodeWithin refuses what is over its budget and decodes the same value
// as Decode when within it.
func TestDecodeWithinBudget(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  budget.Limits
		what string // "" when it decodes
	}{
		{"hello within", "l5:hellod7:version5:3.1.3ee", budget.ForPacket(1 << 10), ""},
		{"empty lists over items", "l" + strings.Repeat("le", 1000) + "e", budget.Limits{Items: 1000}, "items"},
		{"empty lists within items", "l" + strings.Repeat("le", 1000) + "e", budget.Limits{Items: 1001}, ""},
		{"empty lists over bytes", "l" + strings.Repeat("le", 1000) + "e", budget.Limits{Bytes: 24000}, "bytes"},
		{"text copied", "u1000:" + strings.Repeat("a", 1000), budget.Limits{Bytes: 1000}, "bytes"},
		{"nested over depth", strings.Repeat("l", 34) + strings.Repeat("e", 34), budget.Limits{Depth: 32}, "depth"},
		{"nested at depth", strings.Repeat("l", 33) + strings.Repeat("e", 33), budget.Limits{Depth: 32}, ""},
		{"dict items", "d1:ai1e1:bi2ee", budget.Limits{Items: 4}, "items"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := DecodeWithin([]byte(tc.in), budget.New(tc.lim))
			if tc.what == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				want, _ := Decode([]byte(tc.in))
				if !value.Equal(v, want, false) {
					t.Fatalf("%#v, Decode gives %#v", v, want)
				}
				return
			}
			var ex *budget.ExceededError
			if !errors.As(err, &ex) || ex.What != tc.what {
				t.Fatalf("got %v, want a %s refusal", err, tc.what)
			}
		})
	}
}

// bencodePayloads cuts an xpra stream into frames (8-byte header: 'P',
// flags, level, index, size big-endian) and returns the payloads that are
// bencode and uncompressed.
func bencodePayloads(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 8 && b[0] == 'P' {
		size := int(binary.BigEndian.Uint32(b[4:8]))
		if len(b) < 8+size {
			break
		}
		if b[1] == 0 && b[2] == 0 && b[3] == 0 {
			out = append(out, b[8:8+size])
		}
		b = b[8+size:]
	}
	return out
}
