package websocket

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
)

// RFC 6455 §5.2 opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// maxHeaderSize is the largest frame header: 2 bytes, an 8-byte length and
// a 4-byte mask key.
const maxHeaderSize = 14

// header is a frame header as RFC 6455 §5.2 lays it out.
type header struct {
	fin    bool
	rsv    byte // the three reserved bits, as a number 0-7
	op     byte
	masked bool
	mask   [4]byte
	length int64
}

// readHeader reads one frame header into buf (at least maxHeaderSize
// bytes). io.EOF: the stream ended cleanly before a frame; a header cut
// short is io.ErrUnexpectedEOF.
func readHeader(r io.Reader, buf []byte) (header, error) {
	var h header
	b := buf[:2]
	if _, err := io.ReadFull(r, b); err != nil {
		return h, err
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = b[0] >> 4 & 0x7
	h.op = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	n := int64(b[1] & 0x7f)
	extra := 0
	switch n {
	case 126:
		extra = 2
	case 127:
		extra = 8
	}
	if h.masked {
		extra += 4
	}
	if extra > 0 {
		b = buf[:extra]
		if _, err := io.ReadFull(r, b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return h, err
		}
	}
	switch n {
	case 126:
		n = int64(binary.BigEndian.Uint16(b))
		b = b[2:]
	case 127:
		if b[0]&0x80 != 0 {
			return h, fmt.Errorf("%w: 64-bit length with its most significant bit set", ErrProtocol)
		}
		n = int64(binary.BigEndian.Uint64(b))
		b = b[8:]
	}
	h.length = n
	if h.masked {
		copy(h.mask[:], b)
	}
	return h, nil
}

// appendHeader appends a final frame's header for op and a payload of n
// bytes, masked with mask when masked.
func appendHeader(b []byte, op byte, n int, masked bool, mask [4]byte) []byte {
	m := byte(0)
	if masked {
		m = 0x80
	}
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if masked {
		b = append(b, mask[:]...)
	}
	return b
}

// maskChunk is how much of the repeated key cipher XORs at a time.
const maskChunk = 512

// cipher masks or unmasks p in place (the same XOR both ways), p starting
// offset bytes into its frame's payload.
func cipher(p []byte, key [4]byte, offset int) {
	if len(p) < 16 {
		for i := range p {
			p[i] ^= key[(offset+i)&3]
		}
		return
	}
	// The key repeated, starting where p starts, XORed a chunk at a time
	// (crypto/subtle's XOR uses the CPU's vector instructions).
	var ks [maskChunk]byte
	for i := range 4 {
		ks[i] = key[(offset+i)&3]
	}
	for i := 4; i < len(ks); i *= 2 {
		copy(ks[i:], ks[:i])
	}
	for len(p) > 0 {
		n := min(len(p), maskChunk)
		subtle.XORBytes(p[:n], p[:n], ks[:n])
		p = p[n:]
	}
}

// newMask is a client frame's masking key: RFC 6455 §5.3 wants it
// unpredictable to scripts in a browser, not secret, so the runtime's
// ChaCha8 generator serves without a system call per frame.
func newMask() (k [4]byte) {
	binary.BigEndian.PutUint32(k[:], rand.Uint32())
	return k
}

// closeCode is the status code at the start of a close frame's body, 0
// when it has none.
func closeCode(body []byte) uint16 {
	if len(body) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(body)
}
