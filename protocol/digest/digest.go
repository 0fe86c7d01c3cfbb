// SPDX-License-Identifier: GPL-2.0-or-later

// Package digest is the math of xpra's password challenge (PROTOCOL.md
// §5.4-5.5): the digests a client can answer with, how the two salts are
// combined, how a response is computed and verified. It works on plain
// bytes and parses nothing, so the root supervisor can use it to verify
// an answer without ever reading a packet (package challenge has the
// packet itself).
package digest

import (
	"crypto/des"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math/bits"
	"slices"
	"strings"
)

// Digest names.
const (
	XOR  = "xor"
	DES  = "des"
	HMAC = "hmac" // legacy name of hmac+md5
)

var hmacHashes = map[string]func() hash.Hash{
	"md5": md5.New, "sha1": sha1.New, "sha224": sha256.New224, "sha256": sha256.New,
	"sha384": sha512.New384, "sha512": sha512.New,
	"sha3_224": func() hash.Hash { return sha3.New224() }, "sha3_256": func() hash.Hash { return sha3.New256() },
	"sha3_384": func() hash.Hash { return sha3.New384() }, "sha3_512": func() hash.Hash { return sha3.New512() },
}

// Supported lists the digests we can compute, strongest first, in the
// form a client announces them in its hello "digest" cap.
func Supported() []string {
	return []string{XOR, HMAC, "hmac+sha512", "hmac+sha3_512", "hmac+sha3_384", "hmac+sha3_256", "hmac+sha3_224",
		"hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "hmac+md5", DES}
}

// SupportedSalt lists the salt digests we accept: hmac ones only, since
// xor and des salts are refused by 3.1 clients (and always by 6.x).
func SupportedSalt() []string {
	var out []string
	for _, d := range Supported() {
		if strings.HasPrefix(d, "hmac+") {
			out = append(out, d)
		}
	}
	return out
}

// ServerOrder is the preference of a 3.1 server choosing a digest.
var ServerOrder = []string{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "hmac+md5", HMAC, XOR, DES}

// ChooseDigest picks the first of order that the client offered.
func ChooseDigest(offered, order []string) (string, error) {
	for _, d := range order {
		if slices.Contains(offered, d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("digest: no common digest (client offers %s)", strings.Join(offered, ", "))
}

func hmacHash(digest string) func() hash.Hash {
	if digest == HMAC {
		return md5.New
	}
	if name, ok := strings.CutPrefix(digest, "hmac+"); ok {
		return hmacHashes[name]
	}
	return nil
}

// Known reports whether we can compute digest.
func Known(digest string) bool {
	return digest == XOR || digest == DES || hmacHash(digest) != nil
}

// Compute is xpra's digest function: key and msg as a client uses them
// (for the combined salt: key = client salt, msg = server salt; for the
// response: key = password, msg = combined salt). hmac digests give the
// lower-case hex of the MAC as ASCII.
func Compute(digest string, key, msg []byte) ([]byte, error) {
	if len(key) == 0 || len(msg) == 0 {
		return nil, errors.New("digest: empty key or salt")
	}
	switch digest {
	case XOR, "kerberos", "gss", "keycloak":
		// The server XORs back to recover the key (a password or token).
		out := make([]byte, len(key))
		for i := range out {
			if i < len(msg) {
				out[i] = key[i] ^ msg[i]
			} else {
				out[i] = key[i]
			}
		}
		return out, nil
	case DES:
		return []byte(hex.EncodeToString(vncResponse(key, msg))), nil
	}
	h := hmacHash(digest)
	if h == nil {
		return nil, fmt.Errorf("digest: unsupported digest %q", digest)
	}
	m := hmac.New(h, key)
	m.Write(msg)
	return []byte(hex.EncodeToString(m.Sum(nil))), nil
}

// vncResponse is the RFB (VNC) authentication response: the password,
// NUL-padded to 8 bytes and with each byte's bits reversed, is the DES key
// that encrypts the 16-byte challenge in two ECB blocks.
func vncResponse(password, challenge []byte) []byte {
	var key [8]byte
	copy(key[:], password)
	for i := range key {
		key[i] = bits.Reverse8(key[i])
	}
	var in [16]byte
	copy(in[:], challenge)
	c, _ := des.NewCipher(key[:]) // 8-byte keys never fail
	out := make([]byte, 16)
	c.Encrypt(out[:8], in[:8])
	c.Encrypt(out[8:], in[8:])
	return out
}

// CombineSalts derives the combined salt K from both salts.
func CombineSalts(saltDigest string, clientSalt, serverSalt []byte) ([]byte, error) {
	return Compute(saltDigest, clientSalt, serverSalt)
}

// Response computes the client's answer to a challenge.
func Response(digest string, password, combined []byte) ([]byte, error) {
	return Compute(digest, password, combined)
}

// Verify checks a response against one candidate password in constant
// time.
func Verify(digest string, password, combined, response []byte) bool {
	want, err := Compute(digest, password, combined)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(want, response) == 1
}

// RecoverXorPassword undoes an xor response: the password the client sent.
func RecoverXorPassword(response, combined []byte) []byte {
	out := make([]byte, len(response))
	for i := range response {
		out[i] = response[i]
		if i < len(combined) {
			out[i] ^= combined[i]
		}
	}
	return out
}

// Salt lengths (xpra accepts 32..1023 random bytes).
const (
	ServerSaltLen = 64
	clientSaltLen = 32
	MinSalt       = 16
	MaxSalt       = 1023
)

// NewServerSalt returns a fresh single-use server salt.
func NewServerSalt() []byte {
	b := make([]byte, ServerSaltLen)
	rand.Read(b) // never fails since Go 1.24
	return b
}

// NewClientSalt returns a client salt for saltDigest: 32 bytes for an
// hmac, the server salt's length for xor.
func NewClientSalt(saltDigest string, serverSaltLen int) ([]byte, error) {
	n := clientSaltLen
	if saltDigest == XOR {
		if serverSaltLen < MinSalt || serverSaltLen > 256 {
			return nil, fmt.Errorf("digest: xor salt digest with a %d-byte server salt", serverSaltLen)
		}
		n = serverSaltLen
	} else if hmacHash(saltDigest) == nil {
		return nil, fmt.Errorf("digest: unsupported salt digest %q", saltDigest)
	}
	b := make([]byte, n)
	rand.Read(b)
	return b, nil
}

// Padding is the random challenge_padding that hides the response length.
func Padding(responseLen int) []byte {
	b := make([]byte, max(32, 512-responseLen))
	rand.Read(b)
	return b
}
