// SPDX-License-Identifier: GPL-2.0-or-later

// Package wire is xpra's chunk framing: the 8-byte header, reading frames
// from a byte stream with their size limits, and the plain-text
// "disconnect: ..." line a peer may send before any header (PROTOCOL.md §1).
//
// It knows nothing about packet encoders or compressors; those live in their
// own packages, and protocol/conn puts them together.
package wire

import (
	"encoding/binary"
	"fmt"
)

// HeaderSize is the length of every chunk header.
const HeaderSize = 8

// Magic is the first byte of every chunk header.
const Magic = 'P'

// Protocol flag bits (header byte 1).
const (
	FlagBencode     byte = 0x00 // no encoder bit: bencode
	FlagRencode     byte = 0x01 // legacy rencode (3.1)
	FlagCipher      byte = 0x02 // AES-encrypted payload
	FlagYAML        byte = 0x04 // YAML text: debugging only, refused here
	FlagFlush       byte = 0x08 // 6.x: sender has nothing more queued
	FlagRencodePlus byte = 0x10 // rencodeplus (4.3+, 6.x)
)

// Size limits (PROTOCOL.md §1.4).
const (
	// AbsMaxSize is the largest header size either version accepts at all.
	AbsMaxSize = 256 << 20
	// DefaultMaxPacketSize is the initial per-chunk limit before peers raise it.
	DefaultMaxPacketSize = 16 << 20
	// MaxIndexV3 and MaxIndexV6 are the largest raw-chunk indexes accepted.
	MaxIndexV3 = 255
	MaxIndexV6 = 15
	// MaxPendingRaw is how many raw chunks may wait for their main chunk.
	MaxPendingRaw = 3
)

// Header is a parsed chunk header.
type Header struct {
	Flags byte   // protocol flags
	Level byte   // compression: algorithm bits | level
	Index byte   // 0 = main packet chunk, N = raw item N
	Size  uint32 // payload size (unpadded when encrypted)
}

// Encoding names the packet encoder a main chunk's flags select.
type Encoding int

// Packet encoders, in the order a 6.x receiver tests their flag bits.
const (
	Bencode Encoding = iota
	Rencode
	RencodePlus
	YAML
)

func (e Encoding) String() string {
	switch e {
	case Bencode:
		return "bencode"
	case Rencode:
		return "rencode"
	case RencodePlus:
		return "rencodeplus"
	case YAML:
		return "yaml"
	}
	return fmt.Sprintf("encoding(%d)", int(e))
}

// Flag is the header flag bit that announces e.
func (e Encoding) Flag() byte {
	switch e {
	case Rencode:
		return FlagRencode
	case RencodePlus:
		return FlagRencodePlus
	case YAML:
		return FlagYAML
	}
	return FlagBencode
}

// Encoding returns the packet encoder of a main chunk, testing the bits in
// 6.x order (rencodeplus, rencode, yaml, else bencode); 3.1 peers never set
// the rencodeplus bit, so one order serves both.
func (h Header) Encoding() Encoding {
	switch {
	case h.Flags&FlagRencodePlus != 0:
		return RencodePlus
	case h.Flags&FlagRencode != 0:
		return Rencode
	case h.Flags&FlagYAML != 0:
		return YAML
	}
	return Bencode
}

// Encrypted reports whether the CIPHER bit is set.
func (h Header) Encrypted() bool { return h.Flags&FlagCipher != 0 }

// ParseHeader decodes the 8 bytes at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("short chunk header: %d bytes", len(b))
	}
	if b[0] != Magic {
		return Header{}, fmt.Errorf("invalid packet header byte 0x%02x, not an xpra packet", b[0])
	}
	h := Header{Flags: b[1], Level: b[2], Index: b[3], Size: binary.BigEndian.Uint32(b[4:8])}
	if h.Size > AbsMaxSize {
		return Header{}, fmt.Errorf("invalid chunk header: size %d exceeds the absolute maximum %d", h.Size, AbsMaxSize)
	}
	return h, nil
}

// AppendHeader appends the 8-byte form of h to dst.
func AppendHeader(dst []byte, h Header) []byte {
	return append(dst, Magic, h.Flags, h.Level, h.Index,
		byte(h.Size>>24), byte(h.Size>>16), byte(h.Size>>8), byte(h.Size))
}

// String renders h for logs and errors.
func (h Header) String() string {
	return fmt.Sprintf("chunk{flags=0x%02x level=0x%02x index=%d size=%d}", h.Flags, h.Level, h.Index, h.Size)
}
