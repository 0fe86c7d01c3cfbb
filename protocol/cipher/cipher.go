// SPDX-License-Identifier: GPL-2.0-or-later

// Package cipher is xpra's AES layer inside the chunk stream (PROTOCOL.md
// §4). Each side chooses the parameters of the direction it receives and
// announces them in its hello (or challenge); the peer builds its sending
// context from that announcement. Two flavours exist: xpra 3.1's flat
// cipher.* caps (AES-256-CBC, PBKDF2-SHA1, padding to 32 bytes) and 6.x's
// nested "encryption" dict (CBC or CTR, selectable hash, padding to 16,
// optional per-chunk IV).
package cipher

import (
	"bytes"
	"crypto/aes"
	stdcipher "crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"slices"

	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// Flavor is the caps layout and defaults of one xpra generation.
type Flavor int

const (
	V3 Flavor = iota // xpra 3.1: flat cipher.* keys
	V6               // xpra 5.x/6.x: nested "encryption" dict
)

// Padding names.
const (
	PKCS7  = "PKCS#7"
	Legacy = "legacy" // 3.1 only: pad with spaces
)

// Params are one direction's AES parameters, as announced by its receiver.
type Params struct {
	Flavor     Flavor
	Mode       string // "CBC" or "CTR" (3.1: always CBC)
	IV         []byte // 16 bytes, sent as ASCII text
	KeySalt    []byte
	KeyHash    string // PBKDF2 hash: "SHA1" (3.1: always)
	KeySize    int    // 32 in both generations
	Iterations int
	Padding    string
	Stream     bool // 6.x: chain CBC across chunks (false: fresh IV per chunk)
}

// Limits on what a peer may announce (3.1 and 6.5 validate the same ranges).
const (
	minIterationsV3, maxIterationsV3 = 100, 10000
	minIterationsV6, maxIterationsV6 = 1000, 1000000
	maxSaltLen                       = 1024
	ivLen                            = 16
)

// NewParams returns fresh random parameters for our receiving direction.
func NewParams(f Flavor) (Params, error) {
	salt := make([]byte, 64)
	if _, err := rand.Read(salt); err != nil {
		return Params{}, fmt.Errorf("cipher: salt: %w", err)
	}
	raw := make([]byte, 12)
	if _, err := rand.Read(raw); err != nil {
		return Params{}, fmt.Errorf("cipher: iv: %w", err)
	}
	p := Params{Flavor: f, Mode: "CBC", KeySalt: salt, KeyHash: "SHA1", KeySize: 32, Padding: PKCS7, Stream: true}
	if f == V3 {
		// 3.1 uses 16 hex characters; 6.x 16 characters of a url-safe token.
		p.IV = []byte(hex.EncodeToString(raw)[:ivLen])
		p.Iterations = 1000
	} else {
		p.IV = []byte(base64.RawURLEncoding.EncodeToString(raw)[:ivLen])
		p.Iterations = 10000
	}
	return p, nil
}

// Caps returns p as hello caps: flat keys for V3, an "encryption" dict for V6.
func (p Params) Caps() value.Dict {
	if p.Flavor == V3 {
		return value.Dict{
			{Key: "cipher", Value: "AES"},
			{Key: "cipher.iv", Value: string(p.IV)},
			{Key: "cipher.key_salt", Value: p.KeySalt},
			{Key: "cipher.key_stretch_iterations", Value: int64(p.Iterations)},
			{Key: "cipher.padding", Value: p.Padding},
			{Key: "cipher.padding.options", Value: []any{PKCS7}},
		}
	}
	return value.Dict{{Key: "encryption", Value: value.Dict{
		{Key: "cipher", Value: "AES"},
		{Key: "mode", Value: p.Mode},
		{Key: "iv", Value: string(p.IV)},
		{Key: "key_salt", Value: p.KeySalt},
		{Key: "key_hash", Value: p.KeyHash},
		{Key: "key_size", Value: int64(p.KeySize)},
		{Key: "key_stretch", Value: "PBKDF2"},
		{Key: "key_stretch_iterations", Value: int64(p.Iterations)},
		{Key: "padding", Value: p.Padding},
		{Key: "padding.options", Value: []any{PKCS7}},
		{Key: "always-pad", Value: false},
		{Key: "stream", Value: p.Stream},
	}}}
}

// ParseCaps reads a peer's announced parameters from a hello or from a
// challenge's cipher element. ok is false when the peer announced none.
func ParseCaps(d value.Dict) (p Params, ok bool, err error) {
	c := caps.New(d)
	if enc := c.Sub("encryption"); len(enc.Dict()) > 0 {
		p, err = parseV6(enc)
		return p, err == nil, err
	}
	if !c.Has("cipher") && !c.Has("cipher.iv") {
		return Params{}, false, nil
	}
	p = Params{Flavor: V3, Mode: "CBC", KeyHash: "SHA1", KeySize: 32, Stream: true}
	if name := c.Str("cipher", ""); name != "AES" {
		return p, false, fmt.Errorf("cipher: unsupported cipher %q", name)
	}
	p.IV = c.Bytes("cipher.iv")
	p.KeySalt = c.Bytes("cipher.key_salt")
	p.Iterations = int(c.Int("cipher.key_stretch_iterations", 1000))
	p.Padding = c.Str("cipher.padding", Legacy)
	if err := p.check(minIterationsV3, maxIterationsV3); err != nil {
		return p, false, err
	}
	if p.Padding != PKCS7 && p.Padding != Legacy {
		return p, false, fmt.Errorf("cipher: unsupported padding %q", p.Padding)
	}
	return p, true, nil
}

func parseV6(c caps.Caps) (Params, error) {
	p := Params{Flavor: V6}
	if name := c.Str("cipher", "AES"); name != "AES" {
		return p, fmt.Errorf("cipher: unsupported cipher %q", name)
	}
	p.Mode = c.Str("mode", "CBC")
	if p.Mode != "CBC" && p.Mode != "CTR" {
		return p, fmt.Errorf("cipher: unsupported AES mode %q", p.Mode)
	}
	p.IV = c.Bytes("iv")
	p.KeySalt = c.Bytes("key_salt")
	p.KeyHash = c.Str("key_hash", "SHA1")
	if hashFunc(p.KeyHash) == nil {
		return p, fmt.Errorf("cipher: unsupported key hash %q", p.KeyHash)
	}
	p.KeySize = int(c.Int("key_size", 32))
	if p.KeySize != 16 && p.KeySize != 24 && p.KeySize != 32 {
		return p, fmt.Errorf("cipher: unsupported key size %d", p.KeySize)
	}
	if s := c.Str("key_stretch", "PBKDF2"); s != "PBKDF2" {
		return p, fmt.Errorf("cipher: unsupported key stretching %q", s)
	}
	p.Iterations = int(c.Int("key_stretch_iterations", 10000))
	p.Padding = c.Str("padding", PKCS7)
	if p.Padding != PKCS7 {
		return p, fmt.Errorf("cipher: unsupported padding %q", p.Padding)
	}
	p.Stream = c.Bool("stream", true)
	return p, p.check(minIterationsV6, maxIterationsV6)
}

func (p Params) check(minIter, maxIter int) error {
	switch {
	case len(p.IV) != ivLen:
		return fmt.Errorf("cipher: iv must be %d bytes, got %d", ivLen, len(p.IV))
	case len(p.KeySalt) == 0 || len(p.KeySalt) > maxSaltLen:
		return fmt.Errorf("cipher: key salt of %d bytes", len(p.KeySalt))
	case p.Iterations < minIter || p.Iterations > maxIter:
		return fmt.Errorf("cipher: %d key stretching iterations outside %d..%d", p.Iterations, minIter, maxIter)
	}
	return nil
}

func hashFunc(name string) func() hash.Hash {
	switch name {
	case "SHA1":
		return sha1.New
	case "SHA224":
		return sha256.New224
	case "SHA256":
		return sha256.New
	case "SHA384":
		return sha512.New384
	case "SHA512":
		return sha512.New
	}
	return nil
}

// Key stretches the shared secret with p's PBKDF2 parameters.
func (p Params) Key(secret []byte) ([]byte, error) {
	if len(secret) == 0 {
		return nil, errors.New("cipher: encryption key is missing")
	}
	h := hashFunc(p.KeyHash)
	if h == nil {
		return nil, fmt.Errorf("cipher: unsupported key hash %q", p.KeyHash)
	}
	k, err := pbkdf2.Key(h, string(secret), p.KeySalt, p.Iterations, p.KeySize)
	if err != nil {
		return nil, fmt.Errorf("cipher: deriving key: %w", err)
	}
	return k, nil
}

// blockPad is the padding block: 32 in 3.1 (its key size), 16 for 6.x CBC,
// none for CTR.
func (p Params) blockPad() int {
	switch {
	case p.Mode == "CTR":
		return 0
	case p.Flavor == V3:
		return 32
	}
	return aes.BlockSize
}

func (p Params) padByte(n int) byte {
	if p.Padding == Legacy {
		return ' '
	}
	return byte(n)
}

type state struct {
	p       Params
	block   stdcipher.Block
	encrypt bool
	// The direction's running context when p.Stream (one of the two).
	cbc stdcipher.BlockMode
	ctr stdcipher.Stream
}

func newState(p Params, secret []byte, encrypt bool) (state, error) {
	if len(p.IV) != ivLen {
		return state{}, fmt.Errorf("cipher: iv must be %d bytes, got %d", ivLen, len(p.IV))
	}
	key, err := p.Key(secret)
	if err != nil {
		return state{}, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return state{}, fmt.Errorf("cipher: %w", err)
	}
	s := state{p: p, block: b, encrypt: encrypt}
	if p.Stream {
		s.cbc, s.ctr = s.modes(p.IV)
	}
	return s, nil
}

// modes starts a context for iv: CTR, or CBC in this state's direction.
func (s *state) modes(iv []byte) (stdcipher.BlockMode, stdcipher.Stream) {
	switch {
	case s.p.Mode == "CTR":
		return nil, stdcipher.NewCTR(s.block, iv)
	case s.encrypt:
		return stdcipher.NewCBCEncrypter(s.block, iv), nil
	}
	return stdcipher.NewCBCDecrypter(s.block, iv), nil
}

// crypt runs buf through the stream's context, or through a fresh one for
// a chunk's own iv.
func (s *state) crypt(buf, iv []byte) {
	cbc, ctr := s.cbc, s.ctr
	if !s.p.Stream {
		cbc, ctr = s.modes(iv)
	}
	if ctr != nil {
		ctr.XORKeyStream(buf, buf)
	} else {
		cbc.CryptBlocks(buf, buf)
	}
}

// Encrypter seals what we send with the peer's announced parameters.
type Encrypter struct{ state }

// NewEncrypter builds the sending context for a peer's parameters.
func NewEncrypter(p Params, secret []byte) (*Encrypter, error) {
	s, err := newState(p, secret, true)
	if err != nil {
		return nil, err
	}
	return &Encrypter{s}, nil
}

// Seal appends the wire form of plain to dst and returns it with the size
// the chunk header must carry.
func (e *Encrypter) Seal(dst, plain []byte) ([]byte, int) {
	B := e.p.blockPad()
	pad := 0
	if B > 0 {
		pad = B - len(plain)%B
	}
	size := len(plain)
	var iv []byte
	if !e.p.Stream {
		iv = make([]byte, aes.BlockSize)
		rand.Read(iv) // crypto/rand.Read never fails (Go 1.24+)
		dst = append(dst, iv...)
		size += aes.BlockSize
	}
	body := len(dst)
	dst = append(dst, plain...)
	for range pad {
		dst = append(dst, e.p.padByte(pad))
	}
	e.crypt(dst[body:], iv)
	return dst, size
}

// Decrypter opens what we receive with our own announced parameters. It
// implements wire.Decrypter.
type Decrypter struct{ state }

// NewDecrypter builds the receiving context for our parameters.
func NewDecrypter(p Params, secret []byte) (*Decrypter, error) {
	s, err := newState(p, secret, false)
	if err != nil {
		return nil, err
	}
	return &Decrypter{s}, nil
}

// ErrPadding is what a wrong key usually looks like.
var ErrPadding = errors.New("encryption padding error - wrong key?")

// WireSize is how many bytes follow a header announcing size.
func (d *Decrypter) WireSize(size uint32) (int, error) {
	n := int(size)
	if !d.p.Stream && n < aes.BlockSize {
		return 0, fmt.Errorf("cipher: %d-byte chunk cannot hold its iv", n)
	}
	if B := d.p.blockPad(); B > 0 {
		body := n
		if !d.p.Stream {
			body -= aes.BlockSize
		}
		n += B - body%B
	}
	return n, nil
}

// Open decrypts wire (WireSize(size) bytes) and returns the size plaintext
// bytes (without a per-chunk iv), appended to dst; dst may be wire[:0].
func (d *Decrypter) Open(dst, wire []byte, size uint32) ([]byte, error) {
	want, err := d.WireSize(size)
	if err != nil {
		return nil, err
	}
	if len(wire) != want {
		return nil, fmt.Errorf("cipher: chunk of %d bytes, expected %d", len(wire), want)
	}
	body := int(size)
	var iv []byte
	if !d.p.Stream {
		iv, wire = wire[:aes.BlockSize], wire[aes.BlockSize:]
		body -= aes.BlockSize
	}
	out := append(dst, wire...)
	buf := out[len(dst):]
	d.crypt(buf, iv)
	if pad := len(buf) - body; pad > 0 {
		want := d.p.padByte(pad)
		if !bytes.Equal(buf[body:], bytes.Repeat([]byte{want}, pad)) {
			return nil, ErrPadding
		}
	}
	return out[:len(dst)+body], nil
}

// ReadKeyFile reads a shared secret as xpra does: the file's contents
// without trailing CR/LF.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cipher: reading key file: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("cipher: key file %s is empty", path)
	}
	return b, nil
}

// Supported reports whether a mode name is one we can run (for 6.x's
// mode.options).
func Supported(mode string) bool { return slices.Contains([]string{"CBC", "CTR"}, mode) }
