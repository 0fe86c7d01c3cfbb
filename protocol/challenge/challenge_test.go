// SPDX-License-Identifier: GPL-2.0-or-later

package challenge

import (
	"bytes"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func seq(from, to int) []byte {
	b := make([]byte, 0, to-from)
	for i := from; i < to; i++ {
		b = append(b, byte(i))
	}
	return b
}

func TestParseChallenge(t *testing.T) {
	salt := seq(0, 32)
	tests := []struct {
		name string
		p    []any
		ok   bool
		want Challenge
	}{
		{"3.1 no cipher", []any{[]byte("challenge"), salt, []byte(""), []byte("hmac+sha256"), []byte("hmac+sha256"), []byte("password")}, true,
			Challenge{ServerSalt: salt, CipherCaps: "", Digest: "hmac+sha256", SaltDigest: "hmac+sha256", Prompt: "password"}},
		{"6.x empty dict", []any{"challenge", salt, value.Dict{}, "xor", "hmac+sha512", "password for user 'a'"}, true,
			Challenge{ServerSalt: salt, CipherCaps: value.Dict{}, Digest: "xor", SaltDigest: "hmac+sha512", Prompt: "password for user 'a'"}},
		{"old server", []any{"challenge", salt}, true, Challenge{ServerSalt: salt, Digest: "hmac", SaltDigest: "xor", Prompt: "password"}},
		{"no salt", []any{"challenge"}, false, Challenge{}},
		{"short salt", []any{"challenge", []byte("abc")}, false, Challenge{}},
		{"int salt", []any{"challenge", int64(5)}, false, Challenge{}},
		{"bad cipher", []any{"challenge", salt, int64(1)}, false, Challenge{}},
		{"bad digest", []any{"challenge", salt, "", []any{}}, false, Challenge{}},
		{"long prompt", []any{"challenge", salt, "", "xor", "xor", strings.Repeat("p", 300)}, false, Challenge{}},
		{"not a challenge", []any{"hello", salt}, false, Challenge{}},
	}
	for _, tc := range tests {
		got, err := ParseChallenge(tc.p)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
			continue
		}
		if tc.ok && (!bytes.Equal(got.ServerSalt, tc.want.ServerSalt) || got.Digest != tc.want.Digest ||
			got.SaltDigest != tc.want.SaltDigest || got.Prompt != tc.want.Prompt) {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
	c := Challenge{ServerSalt: salt, Digest: "u2f:xor", SaltDigest: "hmac+sha256", Prompt: "password"}
	if c.Method() != "u2f" {
		t.Errorf("Method = %q", c.Method())
	}
	back, err := ParseChallenge(c.Packet())
	if err != nil || back.Digest != c.Digest || back.CipherCaps != "" {
		t.Errorf("Packet round trip: %+v %v", back, err)
	}
}

// FuzzParseChallenge decodes arbitrary rencode and parses it as a
// challenge, as a client (or our proxy) does with what a server sends.
func FuzzParseChallenge(f *testing.F) {
	b, _ := rencode.Encode(Challenge{ServerSalt: seq(0, 32), Digest: "hmac+sha256", SaltDigest: "hmac+sha256", Prompt: "password"}.Packet(), rencode.Legacy)
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, 1<<20, func() {
			v, err := rencode.Decode(in, rencode.Legacy)
			if err != nil {
				return
			}
			p, ok := v.([]any)
			if !ok {
				return
			}
			c, err := ParseChallenge(p)
			if err != nil {
				return
			}
			if len(c.ServerSalt) < digest.MinSalt || len(c.Digest) > maxField {
				t.Fatalf("accepted %+v", c)
			}
			if digest.Known(c.Method()) {
				cs, err := digest.NewClientSalt("hmac+sha256", len(c.ServerSalt))
				if err != nil {
					t.Fatal(err)
				}
				k, _ := digest.CombineSalts("hmac+sha256", cs, c.ServerSalt)
				if _, err := digest.Response(c.Method(), []byte("pw"), k); err != nil {
					t.Fatal(err)
				}
			}
		})
	})
}

func TestAnswer(t *testing.T) {
	salt := digest.NewServerSalt()
	tests := []struct {
		name    string
		ch      Challenge
		wantErr string
	}{
		{"hmac sha256", Challenge{ServerSalt: salt, Digest: "hmac+sha256", SaltDigest: "hmac+sha256"}, ""},
		{"xor with an hmac salt", Challenge{ServerSalt: salt, Digest: "xor", SaltDigest: "hmac+sha256"}, ""},
		{"legacy salt digest", Challenge{ServerSalt: salt, Digest: "hmac+sha256", SaltDigest: "xor"}, "legacy salt digest"},
		{"unknown digest", Challenge{ServerSalt: salt, Digest: "rot13", SaltDigest: "hmac+sha256"}, "unsupported digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.ch.Answer([]byte("secret"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Answer = %v, %v; want an error with %q", d, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fields := map[string][]byte{}
			for _, kv := range d {
				b, _ := kv.Value.([]byte)
				k, _ := kv.Key.(string)
				fields[k] = b
			}
			combined, err := digest.CombineSalts(tt.ch.SaltDigest, fields["challenge_client_salt"], salt)
			if err != nil {
				t.Fatal(err)
			}
			if !digest.Verify(tt.ch.Method(), []byte("secret"), combined, fields["challenge_response"]) {
				t.Fatalf("the answer does not verify: %v", d)
			}
			if digest.Verify(tt.ch.Method(), []byte("other"), combined, fields["challenge_response"]) {
				t.Fatal("the answer verifies another password")
			}
		})
	}
}
