// SPDX-License-Identifier: GPL-2.0-or-later

package caps

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// flat31 is a fragment of a real 3.1.3 client hello (traces/b1), with the
// bytes-for-every-string typing legacy rencode produces.
var flat31 = value.Dict{
	{Key: []byte("version"), Value: []byte("3.1.3")},
	{Key: []byte("encoders"), Value: []any{[]byte("rencode"), []byte("bencode"), []byte("yaml")}},
	{Key: []byte("compressors"), Value: []any{[]byte("zlib"), []byte("lz4")}},
	{Key: []byte("lz4"), Value: true},
	{Key: []byte("lz4.version"), Value: []byte("4.0.2+dfsg")},
	{Key: []byte("brotli"), Value: false},
	{Key: []byte("rencode"), Value: true},
	{Key: []byte("compression_level"), Value: int64(1)},
	{Key: []byte("cipher"), Value: []byte("AES")},
	{Key: []byte("cipher.iv"), Value: []byte("0123456789abcdef")},
	{Key: []byte("info_request"), Value: true},
	{Key: []byte("request"), Value: []byte("info")},
	{Key: []byte("challenge"), Value: true},
	{Key: []byte("username"), Value: []byte("anyuser")},
	{Key: []byte("challenge_client_salt"), Value: []byte{7, 0xf3, 0x43}},
}

// nested6 is the same information laid out as 6.x does.
var nested6 = value.Dict{
	{Key: "version", Value: "6.5"},
	{Key: "encoders", Value: []any{"rencodeplus", "none"}},
	{Key: "compressors", Value: []any{"lz4", "brotli", "none"}},
	{Key: "lz4", Value: value.Dict{{Key: "", Value: true}, {Key: "version", Value: "4.0.2+dfsg"}}},
	{Key: "brotli", Value: value.Dict{{Key: "", Value: false}}},
	{Key: "encryption", Value: value.Dict{{Key: "cipher", Value: "AES"}, {Key: "iv", Value: "0123456789abcdef"}}},
	{Key: "request", Value: "info"},
	{Key: "challenge", Value: true},
	{Key: "username", Value: "anyuser"},
	{Key: "session", Value: value.Dict{{Key: "display", Value: ":10"}}},
}

func TestLookupBothForms(t *testing.T) {
	f, n := New(flat31), New(nested6)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"flat version", f.Str("version", ""), "3.1.3"},
		{"nested version", n.Str("version", ""), "6.5"},
		{"flat lz4 bool", f.Bool("lz4", false), true},
		{"nested lz4 {'': True}", n.Bool("lz4", false), true},
		{"flat brotli false", f.Bool("brotli", true), false},
		{"nested brotli {'': False}", n.Bool("brotli", true), false},
		{"flat dotted", f.Str("lz4.version", ""), "4.0.2+dfsg"},
		{"nested dotted", n.Str("lz4.version", ""), "4.0.2+dfsg"},
		{"nested encryption.iv", n.Str("encryption.iv", ""), "0123456789abcdef"},
		{"flat sub", f.Sub("cipher").Str("iv", ""), "0123456789abcdef"},
		{"nested sub", n.Sub("encryption").Str("iv", ""), "0123456789abcdef"},
		{"missing default", f.Int("nope", 42), int64(42)},
		{"wrong type default", f.Int("version", 7), int64(7)},
		{"binary", string(f.Bytes("challenge_client_salt")), "\x07\xf3C"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestParseHello(t *testing.T) {
	tests := []struct {
		name                         string
		d                            value.Dict
		request, display, user       string
		encoders, compressors        []string
		challenge, connect, has4, hz bool
	}{
		{"3.1 flat", flat31, "info", "", "anyuser", []string{"rencode", "bencode", "yaml"}, []string{"zlib", "lz4"}, true, true, true, true},
		{"6.x nested", nested6, "info", ":10", "anyuser", []string{"rencodeplus", "none"}, []string{"lz4", "brotli", "none"}, true, true, true, false},
		{"legacy request flag", value.Dict{{Key: "version_request", Value: true}, {Key: "connect", Value: false}}, "version", "", "", []string{"bencode"}, nil, false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := ParseHello(tt.d)
			if h.Request != tt.request || h.Display != tt.display || h.Username != tt.user {
				t.Errorf("request %q display %q user %q", h.Request, h.Display, h.Username)
			}
			if !eq(h.Encoders, tt.encoders) || !eq(h.Compressors, tt.compressors) {
				t.Errorf("encoders %q compressors %q", h.Encoders, h.Compressors)
			}
			if h.Challenge != tt.challenge || h.Connect != tt.connect {
				t.Errorf("challenge %v connect %v", h.Challenge, h.Connect)
			}
			if h.HasCompressor("lz4") != tt.has4 || h.HasCompressor("zlib") != tt.hz {
				t.Errorf("lz4 %v zlib %v", h.HasCompressor("lz4"), h.HasCompressor("zlib"))
			}
		})
	}
}

func TestFlattenNest(t *testing.T) {
	flat := Flatten(nested6)
	want := value.Dict{
		{Key: "version", Value: "6.5"},
		{Key: "encoders", Value: []any{"rencodeplus", "none"}},
		{Key: "compressors", Value: []any{"lz4", "brotli", "none"}},
		{Key: "lz4", Value: true},
		{Key: "lz4.version", Value: "4.0.2+dfsg"},
		{Key: "brotli", Value: false},
		{Key: "encryption.cipher", Value: "AES"},
		{Key: "encryption.iv", Value: "0123456789abcdef"},
		{Key: "request", Value: "info"},
		{Key: "challenge", Value: true},
		{Key: "username", Value: "anyuser"},
		{Key: "session.display", Value: ":10"},
	}
	if !value.Equal(flat, want, false) {
		t.Fatalf("Flatten:\n got %v\nwant %v", flat, want)
	}
	// A lone {"": v} flattens to v and cannot come back as a dict; every
	// other key does, and lookups see the same values either way.
	wantBack := append(value.Dict(nil), nested6...)
	wantBack.Set("brotli", false)
	if back := Nest(flat); !value.Equal(back, wantBack, false) {
		t.Fatalf("Nest(Flatten(x)):\n got %v\nwant %v", back, wantBack)
	}
	aliases := value.Dict{{Key: "aliases", Value: value.Dict{{Key: "hello", Value: int64(1)}}}}
	if got := Flatten(aliases, "aliases"); !value.Equal(got, aliases, false) {
		t.Fatalf("kept dict was flattened: %v", got)
	}
}

func TestSetForms(t *testing.T) {
	var flat, nested value.Dict
	for _, kv := range []struct {
		k string
		v any
	}{{"lz4", true}, {"lz4.version", "1"}, {"a.b.c", int64(3)}} {
		Set(&flat, Flat, kv.k, kv.v)
		Set(&nested, Nested, kv.k, kv.v)
	}
	if len(flat) != 3 || New(flat).Str("lz4.version", "") != "1" {
		t.Errorf("flat: %v", flat)
	}
	n := New(nested)
	if !n.Bool("lz4", false) || n.Str("lz4.version", "") != "1" || n.Int("a.b.c", 0) != 3 || len(nested) != 2 {
		t.Errorf("nested: %v", nested)
	}
}

func eq(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
