// SPDX-License-Identifier: GPL-2.0-or-later

// Package challenge is xpra's challenge packet (PROTOCOL.md §5.3): what a
// server sends to ask for a password, parsed and built. The digest math
// lives in package digest.
package challenge

import (
	"errors"
	"fmt"
	"strings"

	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// Challenge is the packet ["challenge", salt, cipher caps, digest,
// salt digest, prompt].
type Challenge struct {
	ServerSalt []byte
	CipherCaps any // "" (3.1, no cipher), a cipher.* dict, or 6.x {} / {"encryption": …}
	Digest     string
	SaltDigest string
	Prompt     string
}

// Method is the digest without its ":suffix" (e.g. "u2f:xor" → "u2f").
func (c Challenge) Method() string {
	m, _, _ := strings.Cut(c.Digest, ":")
	return m
}

// Packet returns the challenge as a packet to send.
func (c Challenge) Packet() []any {
	caps := c.CipherCaps
	if caps == nil {
		caps = ""
	}
	return []any{"challenge", c.ServerSalt, caps, c.Digest, c.SaltDigest, c.Prompt}
}

const maxField = 256

// ParseChallenge reads a challenge packet. Older servers sent fewer
// fields; their defaults are hmac, xor and "password".
func ParseChallenge(p []any) (Challenge, error) {
	if len(p) < 2 {
		return Challenge{}, errors.New("challenge: packet has no salt")
	}
	if name, _ := value.AsString(p[0]); name != "challenge" {
		return Challenge{}, fmt.Errorf("challenge: not a challenge packet (%q)", name)
	}
	c := Challenge{Digest: digest.HMAC, SaltDigest: digest.XOR, Prompt: "password"}
	salt, ok := value.AsBytes(p[1])
	if !ok || len(salt) < digest.MinSalt || len(salt) > digest.MaxSalt {
		return c, fmt.Errorf("challenge: invalid server salt (%s of %d bytes)", value.TypeName(p[1]), len(salt))
	}
	c.ServerSalt = salt
	if len(p) > 2 {
		switch v := p[2].(type) {
		case value.Dict:
			c.CipherCaps = v
		default:
			if s, ok := value.AsString(v); !ok || s != "" {
				return c, fmt.Errorf("challenge: invalid cipher element of type %s", value.TypeName(v))
			}
			c.CipherCaps = ""
		}
	}
	fields := []*string{&c.Digest, &c.SaltDigest, &c.Prompt}
	for i, f := range fields {
		if len(p) <= 3+i {
			break
		}
		s, ok := value.AsString(p[3+i])
		if !ok || len(s) > maxField {
			return c, fmt.Errorf("challenge: invalid element %d (%s)", 3+i, value.TypeName(p[3+i]))
		}
		*f = s
	}
	return c, nil
}

// Answer is a client's hello fields answering c with password: a fresh
// client salt, the salts combined as c.SaltDigest says, the response by
// c's digest and the padding. Only hmac salt digests and digests this
// side knows are answered (a legacy salt digest would send the password
// nearly in clear).
func (c Challenge) Answer(password []byte) (value.Dict, error) {
	if !strings.HasPrefix(c.SaltDigest, "hmac") {
		return nil, fmt.Errorf("server uses legacy salt digest '%s'", c.SaltDigest)
	}
	if !digest.Known(c.Method()) {
		return nil, fmt.Errorf("server requested unsupported digest '%s'", c.Digest)
	}
	cs, err := digest.NewClientSalt(c.SaltDigest, len(c.ServerSalt))
	if err != nil {
		return nil, err
	}
	k, err := digest.CombineSalts(c.SaltDigest, cs, c.ServerSalt)
	if err != nil {
		return nil, err
	}
	resp, err := digest.Response(c.Method(), password, k)
	if err != nil {
		return nil, err
	}
	return value.Dict{
		{Key: "challenge_response", Value: resp},
		{Key: "challenge_client_salt", Value: cs},
		{Key: "challenge_padding", Value: digest.Padding(len(resp))},
	}, nil
}
