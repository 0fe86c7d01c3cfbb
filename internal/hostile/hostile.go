// SPDX-License-Identifier: GPL-2.0-or-later

// Package hostile builds the inputs an unauthenticated attacker sends to
// make a small packet cost a lot of memory (issue 12): a hello whose
// payload decompresses to the pre-auth limit of 4 MiB and holds millions
// of empty lists, in each packet encoder and compressor, and a deeply
// nested one. Unit, fuzz and end-to-end tests share them.
package hostile

import (
	"bytes"
	"fmt"

	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Decompressed is the size the largest amplification payloads decompress
// to: just under 4 MiB, what a 1 MiB packet could decompress to before
// authentication until issue 12 (and brotli's 4 MiB - 16 window).
const Decompressed = 4<<20 - 64

// Input is one hostile chunk, ready to write to a socket.
type Input struct {
	Name string
	Wire []byte // header and payload
	// Lists is how many empty lists it holds (0 for the nesting one).
	Lists int
}

// Inputs returns every variant: rencode and rencodeplus with zlib, lz4 and
// brotli, bencode with zlib, and deep nesting. Building them compresses
// 4 MiB each: call once per test.
func Inputs() ([]Input, error) {
	var out []Input
	for _, v := range []struct {
		enc  wire.Encoding
		algo compress.Algo
		size int
	}{
		{wire.Rencode, compress.Zlib, Decompressed},
		{wire.RencodePlus, compress.Zlib, Decompressed},
		{wire.Bencode, compress.Zlib, Decompressed},
		{wire.Rencode, compress.LZ4, Decompressed},
		{wire.RencodePlus, compress.Brotli, Decompressed},
		// Smaller payloads get past the decompressor's share of the
		// budget and are refused for their values alone.
		{wire.Rencode, compress.Zlib, 1 << 20},
		{wire.RencodePlus, compress.LZ4, 1 << 20},
		{wire.Bencode, compress.Brotli, 1 << 20},
	} {
		in, err := Amplification(v.enc, v.algo, v.size)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return append(out, DeepNesting(wire.Rencode, 120)), nil
}

// Amplification is a hello, ["hello", {"digest": ["hmac+sha256"],
// "salt-digest": ["hmac+sha256"], "x": [[], [], ...]}], whose payload fills size bytes with empty lists (one
// byte each in rencode, two in bencode), compressed with algo. The digests
// make a password module answer with a challenge, so that a proxy
// without budgets keeps the decoded hello until the login timeout.
func Amplification(enc wire.Encoding, algo compress.Algo, size int) (Input, error) {
	var head, item, tail []byte
	switch enc {
	case wire.Rencode, wire.RencodePlus:
		// list of 2: "hello", dict of 3: "digest" and "salt-digest" ->
		// ["hmac+sha256"], "x" -> list up to a terminator.
		head = []byte("\xc2\x85hello\x69\x86digest\xc1\x8bhmac+sha256\x8bsalt-digest\xc1\x8bhmac+sha256\x81x\x3b")
		item = []byte{0xc0}
		tail = []byte{0x7f}
	case wire.Bencode:
		head = []byte("l5:hellod6:digestl11:hmac+sha256e11:salt-digestl11:hmac+sha256e1:xl")
		item = []byte("le")
		tail = []byte("eee")
	default:
		return Input{}, fmt.Errorf("hostile: no amplification for %v", enc)
	}
	n := (size - len(head) - len(tail)) / len(item)
	payload := make([]byte, 0, size)
	payload = append(payload, head...)
	payload = append(payload, bytes.Repeat(item, n)...)
	payload = append(payload, tail...)
	level := 9
	if algo == compress.LZ4 {
		level = 1
	}
	z, lb, err := compress.Compress(algo, level, payload)
	if err != nil {
		return Input{}, fmt.Errorf("hostile: %w", err)
	}
	return Input{Name: fmt.Sprintf("%v+%v %d KiB", enc, algo, size>>10), Wire: frame(enc, lb, z), Lists: n}, nil
}

// DeepNesting is ["hello", {"x": [[[...]]]}] with depth lists, not
// compressed: within the decoders' absolute nesting limit (128) when
// depth is below it, far beyond what any real packet nests.
func DeepNesting(enc wire.Encoding, depth int) Input {
	p := []byte("\xc2\x85hello\x67\x81x")
	p = append(p, bytes.Repeat([]byte{0xc1}, depth)...)
	p = append(p, 0xc0)
	return Input{Name: fmt.Sprintf("%v nested %d deep", enc, depth), Wire: frame(enc, 0, p)}
}

func frame(enc wire.Encoding, level byte, payload []byte) []byte {
	h := wire.Header{Flags: enc.Flag(), Level: level, Size: uint32(len(payload))}
	return append(wire.AppendHeader(nil, h), payload...)
}
