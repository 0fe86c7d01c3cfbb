// SPDX-License-Identifier: GPL-2.0-or-later

package cipher

import (
	"bytes"
	"encoding/hex"
	"errors"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"os"
	"path/filepath"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// TV8 (PROTOCOL.md §10), recomputed there with xpra 3.1.3's own functions.
func TestTV8(t *testing.T) {
	p := Params{Flavor: V3, Mode: "CBC", IV: []byte("0123456789abcdef"), KeySalt: seq(64), KeyHash: "SHA1",
		KeySize: 32, Iterations: 1000, Padding: PKCS7, Stream: true}
	key, err := p.Key([]byte("mykey"))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(key); got != "2f69f0d66878ca50267c461e865b8bba0a949e8eef9e36bda6ff1cdf0ea4fa27" {
		t.Fatalf("key %s", got)
	}
	plain, _ := hex.DecodeString("c28470696e673f03e8")
	enc, err := NewEncrypter(p, []byte("mykey"))
	if err != nil {
		t.Fatal(err)
	}
	wire, size := enc.Seal(nil, plain)
	if size != 9 {
		t.Fatalf("header size %d, want 9 (unpadded)", size)
	}
	if got := hex.EncodeToString(wire); got != "408f4237c4aebd8fd9ee76a91518bff5ce9fd511f061d6edb74dd43c21322f3b" {
		t.Fatalf("ciphertext %s", got)
	}
	dec, _ := NewDecrypter(p, []byte("mykey"))
	if n, _ := dec.WireSize(9); n != 32 {
		t.Fatalf("WireSize(9) = %d, want 32", n)
	}
	out, err := dec.Open(nil, wire, 9)
	if err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("Open = % x, %v", out, err)
	}
}

func TestWireSize(t *testing.T) {
	tests := []struct {
		flavor Flavor
		mode   string
		stream bool
		size   uint32
		want   int
	}{
		{V3, "CBC", true, 9, 32}, {V3, "CBC", true, 32, 64}, {V3, "CBC", true, 326, 352}, {V3, "CBC", true, 370, 384},
		{V6, "CBC", true, 9, 16}, {V6, "CBC", true, 16, 32}, {V6, "CTR", true, 9, 9},
		{V6, "CBC", false, 16 + 9, 16 + 16}, {V6, "CTR", false, 16 + 9, 25},
	}
	for _, tc := range tests {
		p, _ := NewParams(tc.flavor)
		p.Mode, p.Stream = tc.mode, tc.stream
		d, err := NewDecrypter(p, []byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := d.WireSize(tc.size); err != nil || got != tc.want {
			t.Errorf("%v %s stream=%v WireSize(%d) = %d, %v; want %d", tc.flavor, tc.mode, tc.stream, tc.size, got, err, tc.want)
		}
	}
}

// Several chunks through one context: the CBC chain (or CTR counter)
// continues across them, as xpra runs it.
func TestStreamRoundTrip(t *testing.T) {
	secret := []byte("shared secret")
	for _, tc := range []struct {
		flavor  Flavor
		mode    string
		stream  bool
		padding string
	}{
		{V3, "CBC", true, PKCS7}, {V3, "CBC", true, Legacy}, {V6, "CBC", true, PKCS7}, {V6, "CTR", true, PKCS7},
		{V6, "CBC", false, PKCS7}, {V6, "CTR", false, PKCS7},
	} {
		p, err := NewParams(tc.flavor)
		if err != nil {
			t.Fatal(err)
		}
		p.Mode, p.Stream, p.Padding = tc.mode, tc.stream, tc.padding
		// The receiver announces p; the sender parses the announcement.
		peer, ok, err := ParseCaps(p.Caps())
		if tc.padding == Legacy && tc.flavor == V3 {
			ok, err, peer = true, nil, p // legacy is never announced by us
		}
		if err != nil || !ok {
			t.Fatalf("ParseCaps(Caps()): %v %v", ok, err)
		}
		enc, err := NewEncrypter(peer, secret)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := NewDecrypter(p, secret)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range []int{0, 1, 15, 16, 31, 32, 33, 1000} {
			plain := seq(n)
			wire, size := enc.Seal(nil, plain)
			ws, err := dec.WireSize(uint32(size))
			if err != nil || ws != len(wire) {
				t.Fatalf("%+v chunk %d: WireSize %d, %v; sealed %d", tc, i, ws, err, len(wire))
			}
			out, err := dec.Open(nil, wire, uint32(size))
			if err != nil || !bytes.Equal(out, plain) {
				t.Fatalf("%+v chunk %d: Open: %v", tc, i, err)
			}
		}
	}
}

func TestWrongKey(t *testing.T) {
	p, _ := NewParams(V3)
	enc, _ := NewEncrypter(p, []byte("right"))
	dec, _ := NewDecrypter(p, []byte("wrong"))
	wire, size := enc.Seal(nil, []byte("hello"))
	if _, err := dec.Open(nil, wire, uint32(size)); !errors.Is(err, ErrPadding) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := NewEncrypter(p, nil); err == nil {
		t.Fatal("an empty secret was accepted")
	}
}

func TestParseCaps(t *testing.T) {
	good := func() value.Dict {
		p, _ := NewParams(V3)
		return p.Caps()
	}
	set := func(d value.Dict, k string, v any) value.Dict { d.Set(k, v); return d }
	tests := []struct {
		name string
		d    value.Dict
		ok   bool
	}{
		{"v3", good(), true},
		{"v3 as bytes", value.Dict{{Key: []byte("cipher"), Value: []byte("AES")}, {Key: []byte("cipher.iv"), Value: []byte("0123456789abcdef")},
			{Key: []byte("cipher.key_salt"), Value: seq(64)}, {Key: []byte("cipher.key_stretch_iterations"), Value: int64(1000)},
			{Key: []byte("cipher.padding"), Value: []byte("PKCS#7")}}, true},
		{"other cipher", set(good(), "cipher", "DES"), false},
		{"short iv", set(good(), "cipher.iv", "0123"), false},
		{"too few iterations", set(good(), "cipher.key_stretch_iterations", int64(10)), false},
		{"too many iterations", set(good(), "cipher.key_stretch_iterations", int64(1<<30)), false},
		{"no salt", set(good(), "cipher.key_salt", []byte{}), false},
		{"odd padding", set(good(), "cipher.padding", "ISO"), false},
		{"v6 GCM", value.Dict{{Key: "encryption", Value: value.Dict{{Key: "mode", Value: "GCM"}}}}, false},
		{"v6 md5", value.Dict{{Key: "encryption", Value: value.Dict{{Key: "key_hash", Value: "MD5"}}}}, false},
	}
	for _, tc := range tests {
		_, ok, err := ParseCaps(tc.d)
		if ok != tc.ok || (err == nil) != tc.ok {
			t.Errorf("%s: ok=%v err=%v, want ok=%v", tc.name, ok, err, tc.ok)
		}
	}
	if _, ok, err := ParseCaps(value.Dict{{Key: "version", Value: "3.1.3"}}); ok || err != nil {
		t.Errorf("no cipher caps: ok=%v err=%v", ok, err)
	}
	p6, _ := NewParams(V6)
	p6.Mode, p6.KeyHash = "CTR", "SHA256"
	back, ok, err := ParseCaps(p6.Caps())
	if !ok || err != nil || back.Mode != "CTR" || back.KeyHash != "SHA256" || back.Iterations != 10000 || !bytes.Equal(back.IV, p6.IV) {
		t.Errorf("v6 caps round trip: %+v %v %v", back, ok, err)
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	os.WriteFile(path, []byte("secret\r\n"), 0o600)
	if k, err := ReadKeyFile(path); err != nil || string(k) != "secret" {
		t.Fatalf("%q %v", k, err)
	}
	os.WriteFile(path, []byte("\n"), 0o600)
	if _, err := ReadKeyFile(path); err == nil {
		t.Fatal("empty key accepted")
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}

// FuzzOpen feeds arbitrary chunks to every decrypter shape: errors, never
// panics, and never more plaintext than the header announced.
func FuzzOpen(f *testing.F) {
	f.Add(byte(0), uint32(9), bytes.Repeat([]byte{1}, 32))
	f.Add(byte(5), uint32(25), bytes.Repeat([]byte{1}, 32))
	f.Add(byte(3), uint32(0), []byte{})
	f.Fuzz(func(t *testing.T, shape byte, size uint32, wire []byte) {
		fuzzcheck.Bounded(t, fuzzLimit, func() {
			p := Params{Flavor: Flavor(shape & 1), Mode: "CBC", IV: []byte("0123456789abcdef"), KeySalt: []byte("salt"),
				KeyHash: "SHA1", KeySize: 32, Iterations: 100, Padding: PKCS7, Stream: shape&4 == 0}
			if shape&2 != 0 {
				p.Mode = "CTR"
			}
			if shape&8 != 0 {
				p.Padding = Legacy
			}
			d, err := NewDecrypter(p, []byte("k"))
			if err != nil {
				t.Fatal(err)
			}
			n, err := d.WireSize(size)
			if err != nil || n != len(wire) {
				return
			}
			out, err := d.Open(nil, wire, size)
			if err == nil && len(out) > int(size) {
				t.Fatalf("%d plaintext bytes for size %d", len(out), size)
			}
		})
	})
}

// fuzzLimit is the packet limit the fuzz target holds the parser to: fuzz
// inputs are far smaller than a packet, so any allocation this large
// would mean a size taken from the input rather than from its length.
const fuzzLimit = 1 << 20
