// SPDX-License-Identifier: GPL-2.0-or-later

package relay

import (
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func TestServerHello(t *testing.T) {
	client := value.Dict{
		{Key: []byte("version"), Value: []byte("3.1.3")},
		{Key: []byte("aliases"), Value: value.Dict{{Key: []byte("hello"), Value: int64(1)}}},
		{Key: []byte("challenge_response"), Value: []byte("abc")},
		{Key: []byte("challenge_client_salt"), Value: []byte{1, 2}},
		{Key: []byte("cipher.iv"), Value: []byte("0123456789abcdef")},
		{Key: []byte("digest"), Value: []any{[]byte("xor")}},
		{Key: []byte("compressors"), Value: []any{[]byte("zlib"), []byte("lz4")}},
		{Key: []byte("compression_level"), Value: int64(1)},
		{Key: []byte("username"), Value: []byte("carol")},
		{Key: []byte("windows"), Value: true},
	}
	got := caps.New(ServerHello(client, ServerHelloOptions{
		Username:       "alice",
		SessionOptions: map[string]string{"compression": "0", "evil": "x", "lz4": "no"},
		Digests:        []string{"hmac+sha256"},
		UID:            1000, GID: 1000,
	}))
	for _, gone := range []string{"aliases", "challenge_response", "challenge_client_salt", "cipher.iv", "evil"} {
		if got.Has(gone) {
			t.Errorf("%s was forwarded", gone)
		}
	}
	checks := []struct {
		key  string
		got  any
		want any
	}{
		{"username", got.Str("username", ""), "alice"},
		{"version kept", got.Str("version", ""), "3.1.3"},
		{"windows kept", got.Bool("windows", false), true},
		{"compressors kept", strings.Join(got.Strings("compressors"), ","), "zlib,lz4"},
		{"session compression option", got.Int("compression_level", -1), int64(0)},
		{"session lz4 option", got.Bool("lz4", true), false},
		{"our digests", strings.Join(got.Strings("digest"), ","), "hmac+sha256"},
		{"proxy flag", got.Bool("proxy", false), true},
		{"proxy uid", got.Int("proxy.uid", 0), int64(1000)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.key, c.got, c.want)
		}
	}
}

func TestClientHello(t *testing.T) {
	server := value.Dict{
		{Key: []byte("version"), Value: []byte("3.1.3")},
		{Key: []byte("aliases"), Value: value.Dict{{Key: []byte("draw"), Value: int64(35)}}},
		{Key: []byte("cipher"), Value: []byte("AES")},
		{Key: []byte("encodings"), Value: []any{[]byte("rgb")}},
	}
	got := caps.New(ClientHello(server, caps.Flat, 1000, 1000))
	if got.Has("aliases") || got.Has("cipher") {
		t.Errorf("server-link keys forwarded: %v", got.Dict())
	}
	if !got.Bool("proxy", false) || got.Str("version", "") != "3.1.3" || len(got.Strings("encodings")) != 1 {
		t.Errorf("hello: %v", got.Dict())
	}
}
