// SPDX-License-Identifier: GPL-2.0-or-later

package rencode

import (
	"bytes"
	"encoding/hex"
	"errors"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// Test vectors from PROTOCOL.md §10 (TV1, TV2, TV3, TV10's main chunks).
func TestVectors(t *testing.T) {
	big40 := int64(1) << 40
	tests := []struct {
		name   string
		v      any
		legacy string
		plus   string // "" means identical to legacy
	}{
		{"TV1 hello", []any{"hello", value.Dict{{Key: "version", Value: "3.1.3"}}},
			"c2 85 68656c6c6f 67 87 76657273696f6e 85 332e312e33", ""},
		{"TV2 binary", []any{"challenge", []byte{0, 1}},
			"c2 89 6368616c6c656e6765 82 00 01", "c2 89 6368616c6c656e6765 32 2f 00 01"},
		{"TV3 5", int64(5), "05", ""},
		{"TV3 -1", int64(-1), "46", ""},
		{"TV3 -32", int64(-32), "65", ""},
		{"TV3 44", int64(44), "3e 2c", ""},
		{"TV3 1000", int64(1000), "3f 03 e8", ""},
		{"TV3 70000", int64(70000), "40 00 01 11 70", ""},
		{"TV3 2**40", big40, "41 00 00 01 00 00 00 00 00", ""},
		{"TV3 True", true, "43", ""},
		{"TV3 False", false, "44", ""},
		{"TV3 None", nil, "45", ""},
		{"TV3 1.5", float32(1.5), "42 3f c0 00 00", "2c 3f f8 00 00 00 00 00 00"},
		{"TV3 empty str", "", "80", ""},
		{"TV3 empty bytes", []byte{}, "80", "30 2f"},
		{"TV4 ping", []any{"ping", int64(1000)}, "c2 84 70696e67 3f 03 e8", ""},
		{"TV10 main 3.1", []any{"test", int64(1), []byte{}}, "c3 84 74657374 01 80", "c3 84 74657374 01 30 2f"},
	}
	for _, tc := range tests {
		for _, d := range []Dialect{Legacy, Plus} {
			want := tc.legacy
			if d == Plus && tc.plus != "" {
				want = tc.plus
			}
			t.Run(tc.name+"/"+d.String(), func(t *testing.T) {
				got, err := Encode(tc.v, d)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, unhex(t, want)) {
					t.Fatalf("Encode = % x, want %s", got, want)
				}
				back, err := Decode(got, d)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				// Legacy cannot tell text from bytes; plus must keep them apart.
				want := tc.v
				if f, ok := want.(float32); ok && d == Plus {
					want = float64(f) // rencodeplus always writes float64
				}
				if !value.Equal(back, want, d == Legacy) {
					t.Fatalf("Decode = %#v, want %#v", back, tc.v)
				}
			})
		}
	}
}

func TestEncodeChoices(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name string
		v    any
		d    Dialect
		want string
	}{
		{"int8 min", int64(-128), Legacy, "3e 80"},
		{"-33", int64(-33), Legacy, "3e df"},
		{"int16 edge", int64(128), Legacy, "3f 00 80"},
		{"int32 edge", int64(32768), Legacy, "40 00 00 80 00"},
		{"int64 edge", int64(math.MaxInt32) + 1, Legacy, "41 00 00 00 00 80 00 00 00"},
		{"uint64 max", uint64(math.MaxUint64), Legacy, "3d " + hex.EncodeToString([]byte("18446744073709551615")) + " 7f"},
		{"str 63", strings.Repeat("b", 63), Legacy, "bf" + hex.EncodeToString([]byte(strings.Repeat("b", 63)))},
		{"str 64", long, Legacy, hex.EncodeToString([]byte("64:" + long))},
		{"bytes 64 plus", []byte(long), Plus, hex.EncodeToString([]byte("64/" + long))},
		{"float64 legacy", 0.5, Legacy, "2c 3fe0000000000000"},
		{"list 64", make([]any, 64), Legacy, "3b" + strings.Repeat("45", 64) + "7f"},
		{"[]string", []string{"a"}, Legacy, "c1 81 61"},
		{"int key dict", value.Dict{{Key: int64(1), Value: "hello"}}, Legacy, "67 01 85 68656c6c6f"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.v, tc.d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, unhex(t, tc.want)) {
				t.Fatalf("got % x, want %s", got, tc.want)
			}
		})
	}
	big25 := make(value.Dict, 25)
	for i := range big25 {
		big25[i] = value.Item{Key: int64(i), Value: nil}
	}
	got, err := Encode(big25, Legacy)
	if err != nil || got[0] != chrDict || got[len(got)-1] != chrTerm {
		t.Fatalf("25-entry dict must use the terminated form: % x, %v", got, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		d    Dialect
	}{
		{"empty", "", Legacy},
		{"truncated string", "85 6865", Legacy},
		{"truncated int32", "40 00 01", Legacy},
		{"unterminated list", "3b 01 02", Legacy},
		{"unterminated dict", "3c 01 02", Legacy},
		{"dict missing value", "67 01", Legacy},
		{"leading zero legacy", "30 3a", Legacy},
		{"slash legacy", "32 2f 00 01", Legacy},
		{"bad separator", "32 2c 00 01", Plus},
		{"trailing", "05 05", Legacy},
		{"lone terminator", "7f", Legacy},
		{"invalid code 45 is none but 46..", "2d", Legacy},
		{"bigint not a number", "3d 31 32 61 7f", Legacy},
		{"bigint unterminated", "3d 31 32", Legacy},
		{"bigint too long", "3d" + strings.Repeat("31", 70) + "7f", Legacy},
		{"string length overflow", hex.EncodeToString([]byte("99999999999:")), Legacy},
		{"list key", "67 c0 01", Legacy},
		{"huge fixed list", "ff", Legacy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Decode(unhex(t, tc.in), tc.d)
			if err == nil {
				t.Fatalf("decoded %#v, want an error", v)
			}
		})
	}
	_, err := Decode([]byte{5, 5}, Legacy)
	if !errors.Is(err, ErrTrailing) {
		t.Fatalf("want ErrTrailing, got %v", err)
	}
	var se *SyntaxError
	if _, err := Decode([]byte{0x85}, Plus); !errors.As(err, &se) || se.Dialect != Plus {
		t.Fatalf("want a rencodeplus SyntaxError, got %v", err)
	}
}

func TestDepthLimit(t *testing.T) {
	deep := append(bytes.Repeat([]byte{0xc1}, MaxDepth+5), 0x01)
	if _, err := Decode(deep, Legacy); err == nil {
		t.Fatal("decoded a list nested beyond MaxDepth")
	}
	ok := append(bytes.Repeat([]byte{0xc1}, MaxDepth), 0x01)
	if _, err := Decode(ok, Legacy); err != nil {
		t.Fatalf("nesting of MaxDepth refused: %v", err)
	}
}

func TestDecodeTypes(t *testing.T) {
	tests := []struct {
		in   string
		d    Dialect
		want any
	}{
		{"85 68656c6c6f", Legacy, []byte("hello")},
		{"85 68656c6c6f", Plus, "hello"},
		{hex.EncodeToString([]byte("5:hello")), Plus, "hello"},
		{hex.EncodeToString([]byte("0/")), Plus, []byte{}},
		{"2c 3ff8000000000000", Legacy, 1.5},
		{"42 3fc00000", Plus, float32(1.5)},
		{"3e ff", Legacy, int64(-1)},
		{"41 ffffffffffffffff", Legacy, int64(-1)},
		{"3d 2d3132333435363738393031323334353637383930 7f", Legacy, mustBig("-12345678901234567890")},
		{"3c 81 61 01 7f", Legacy, value.Dict{{Key: []byte("a"), Value: int64(1)}}},
	}
	for _, tc := range tests {
		got, err := Decode(unhex(t, tc.in), tc.d)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !value.Equal(got, tc.want, false) {
			t.Errorf("%s (%s) = %#v, want %#v", tc.in, tc.d, got, tc.want)
		}
	}
}

func mustBig(s string) *big.Int {
	b, _ := new(big.Int).SetString(s, 10)
	return b
}

// The decoder never allocates more than the input can justify: a fixed list
// of 63 items from a 1-byte input must fail fast without a big allocation.
func TestAllocationBoundedByInput(t *testing.T) {
	in := []byte{chrList}
	allocs := testing.AllocsPerRun(10, func() { _, _ = Decode(in, Legacy) })
	if allocs > 4 {
		t.Fatalf("%v allocations for a 1-byte input", allocs)
	}
}

func FuzzDecodeLegacy(f *testing.F) { fuzzDecode(f, Legacy) }
func FuzzDecodePlus(f *testing.F)   { fuzzDecode(f, Plus) }

func fuzzDecode(f *testing.F, d Dialect) {
	for _, s := range []string{
		"c2 85 68656c6c6f 67 87 76657273696f6e 85 332e312e33",
		"c2 89 6368616c6c656e6765 32 2f 00 01",
		"3b 01 3c 81 61 3d 31 32 7f 7f 7f",
		"42 3fc00000", "2c 3ff8000000000000", "41 00 00 01 00 00 00 00 00",
	} {
		f.Add(unhex(f, s))
	}
	// Issue 12's amplification (empty lists) and deep nesting.
	f.Add(append(append([]byte("\xc2\x85hello\x67\x81x\x3b"), bytes.Repeat([]byte{0xc0}, 64<<10)...), 0x7f))
	f.Add(append(append([]byte("\xc2\x85hello\x67\x81x"), bytes.Repeat([]byte{0xc1}, 120)...), 0xc0))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, fuzzLimit, func() {
			v, err := DecodeWithin(in, d, budget.New(fuzzBudget))
			if err != nil {
				return
			}
			out, err := Encode(v, d)
			if err != nil {
				// Only big integers that fit int64 re-encode differently; nothing
				// decoded may be unencodable.
				t.Fatalf("re-encoding a decoded value: %v", err)
			}
			back, err := Decode(out, d)
			if err != nil {
				t.Fatalf("decoding our own encoding % x: %v", out, err)
			}
			// Plus widens float32 to float64, so compare encodings: one more
			// trip must be a fixpoint; legacy must also give the same value.
			again, err := Encode(back, d)
			if err != nil || !bytes.Equal(out, again) {
				t.Fatalf("encoding is not stable: % x then % x (%v)", out, again, err)
			}
			if d == Legacy && !value.Equal(v, back, false) {
				t.Fatalf("round trip changed the value: %#v -> %#v", v, back)
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

// DecodeWithin refuses what is over its budget, whichever limit it is,
// and decodes the same value as Decode when within it.
func TestDecodeWithinBudget(t *testing.T) {
	emptyLists := func(n int) []byte {
		b := append([]byte{chrList}, bytes.Repeat([]byte{listFixedStart}, n)...)
		return append(b, chrTerm)
	}
	nested := func(n int) []byte {
		return append(bytes.Repeat([]byte{listFixedStart + 1}, n), listFixedStart)
	}
	tests := []struct {
		name string
		in   []byte
		lim  budget.Limits
		what string // "" when it decodes
		// legacy strings alias the input: only rencodeplus text is copied
		legacyFits bool
	}{
		{"hello within", unhex(t, "c2 85 68656c6c6f 67 87 76657273696f6e 85 332e312e33"), budget.ForPacket(1 << 10), "", false},
		{"empty lists over items", emptyLists(1000), budget.Limits{Items: 999}, "items", false},
		{"empty lists within items", emptyLists(1000), budget.Limits{Items: 1001}, "", false},
		// 1000 boxed slices alone are 24 000 bytes.
		{"empty lists over bytes", emptyLists(1000), budget.Limits{Bytes: 24000}, "bytes", false},
		{"long string copied", append([]byte("1000:"), bytes.Repeat([]byte("a"), 1000)...), budget.Limits{Bytes: 1000}, "bytes", true},
		{"nested over depth", nested(33), budget.Limits{Depth: 32}, "depth", false},
		{"nested at depth", nested(32), budget.Limits{Depth: 32}, "", false},
		{"nested beyond the ceiling", nested(MaxDepth + 1), budget.Limits{}, "depth", false},
		{"dict items", unhex(t, "3c 81 61 01 81 62 02 7f"), budget.Limits{Items: 4}, "items", false},
	}
	for _, d := range []Dialect{Legacy, Plus} {
		for _, tc := range tests {
			t.Run(d.String()+"/"+tc.name, func(t *testing.T) {
				m := budget.New(tc.lim)
				v, err := DecodeWithin(tc.in, d, m)
				var ex *budget.ExceededError
				if tc.what == "" || (d == Legacy && tc.legacyFits) {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					want, _ := Decode(tc.in, d)
					if !value.Equal(v, want, false) {
						t.Fatalf("%#v, Decode gives %#v", v, want)
					}
					return
				}
				if !errors.As(err, &ex) || ex.What != tc.what {
					t.Fatalf("got %v, want a %s refusal", err, tc.what)
				}
			})
		}
	}
}
