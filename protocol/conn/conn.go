// SPDX-License-Identifier: GPL-2.0-or-later

// Package conn carries whole xpra packets over a byte stream: framing and
// raw chunks (wire), packet encoders (rencode, rencodeplus, bencode),
// compression and AES, with the per-direction state xpra negotiates in its
// hellos. Both the proxy's legs and the probe client use it.
package conn

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/xpra-proxy/xpra-proxy/protocol/bencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/cipher"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Sizes that shape what is written (PROTOCOL.md §1.3).
const (
	// MinCompressSize: smaller main chunks are not worth compressing.
	MinCompressSize = 378
	// RawChunkSize: binary items this large travel as their own chunk so the
	// main chunk stays small and they are not re-compressed.
	RawChunkSize = 32 << 10
	// joinSize: below this, header and payload go out in one buffer.
	joinSize = 64 << 10
)

// Packet is a decoded packet: element 0 is its type name.
type Packet = []any

// Conn reads and writes packets. Reads must come from one goroutine; writes
// are serialised internally so any goroutine may write.
type Conn struct {
	rw io.ReadWriter
	r  *wire.Reader
	rc wire.RawChunks

	maxDecompressed int
	budget          budget.Limits  // what decoding one packet may cost
	meter           *budget.Meter  // the packet being read (raw chunks, then main)
	announced       packet.Aliases // the table we sent: the peer may use its integers

	wmu       sync.Mutex
	encoding  wire.Encoding
	algo      compress.Algo
	level     int
	flush     bool // set the 6.x FLUSH bit on main chunks
	rawChunks bool
	maxIndex  int
	enc       *cipher.Encrypter
	hdr       []byte
	written   atomic.Int64
}

// New wraps a stream. The first packet is sent with legacy rencode and no
// compression, which both a 3.1 peer and our own proxy accept.
func New(rw io.ReadWriter) *Conn {
	return &Conn{
		rw:              rw,
		r:               wire.NewReader(rw),
		maxDecompressed: wire.AbsMaxSize,
		encoding:        wire.Rencode,
		algo:            compress.None,
		rawChunks:       true,
		maxIndex:        wire.MaxIndexV6,
	}
}

// Reader exposes the frame reader, for limits and for relaying whole frames.
func (c *Conn) Reader() *wire.Reader { return c.r }

// SetMaxDecompressed bounds the size of any decompressed chunk.
func (c *Conn) SetMaxDecompressed(n int) { c.maxDecompressed = n }

// SetBudget bounds what decoding one packet (its raw chunks and main
// chunk together) may cost in Go memory, values and nesting; a packet
// over it fails ReadPacket with an error wrapping budget.ErrExceeded.
// The default has no limits but the decoders' nesting limit.
func (c *Conn) SetBudget(l budget.Limits) { c.budget = l }

// SetPacketLimit sets the wire limit of a chunk to n, the decompressed
// limit to n too, and the decoding budget derived from n
// (budget.ForPacket): the one call for a side that reads from an
// unauthenticated peer. Decompressing to n, not more: what a client says
// before authentication is a hello of a few KB, and inflating a bomb
// costs CPU in proportion (4 MiB of zlib took 23 ms of a pre-auth
// process's 41).
func (c *Conn) SetPacketLimit(n int) {
	c.r.SetMaxSize(n)
	c.SetMaxDecompressed(n)
	c.SetBudget(budget.ForPacket(n))
}

// SetAnnouncedAliases records the alias table we sent in our hello.
func (c *Conn) SetAnnouncedAliases(a packet.Aliases) { c.announced = a }

// SetEncoding chooses the packet encoder for what we send.
func (c *Conn) SetEncoding(e wire.Encoding) error {
	if e == wire.YAML {
		return fmt.Errorf("yaml packet encoding is not supported")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.encoding = e
	c.flush = e == wire.RencodePlus
	return nil
}

// Encoding returns the packet encoder used for sending.
func (c *Conn) Encoding() wire.Encoding {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.encoding
}

// SetCompression chooses the compressor and level for what we send.
func (c *Conn) SetCompression(a compress.Algo, level int) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if level <= 0 {
		a = compress.None
	}
	c.algo, c.level = a, level
}

// SetEncrypter installs (or with nil removes) the AES layer for what we send.
func (c *Conn) SetEncrypter(e *cipher.Encrypter) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.enc = e
}

// SetDecrypter installs (or with nil removes) the AES layer for what we read.
func (c *Conn) SetDecrypter(d *cipher.Decrypter) {
	if d == nil {
		c.r.SetDecrypter(nil)
		return
	}
	c.r.SetDecrypter(d)
}

// ApplyPeerHello adopts what the peer's hello says it can decode, the way
// xpra does on receipt of a hello: the first encoder and compressor of our
// preference order that the peer supports.
func (c *Conn) ApplyPeerHello(h caps.Hello, level int) error {
	var e wire.Encoding
	switch {
	case h.HasEncoder("rencodeplus"):
		e = wire.RencodePlus
	case h.HasEncoder("rencode"):
		e = wire.Rencode
	case h.HasEncoder("bencode"):
		e = wire.Bencode
	default:
		return fmt.Errorf("no common packet encoder: peer offers %q", h.Encoders)
	}
	if err := c.SetEncoding(e); err != nil {
		return err
	}
	algo := compress.None
	for _, a := range []compress.Algo{compress.LZ4, compress.Zlib, compress.Brotli} {
		if h.HasCompressor(a.String()) {
			algo = a
			break
		}
	}
	c.SetCompression(algo, level)
	c.wmu.Lock()
	c.rawChunks = h.Bool("chunks", true)
	if e == wire.RencodePlus {
		c.maxIndex = wire.MaxIndexV6
		c.r.SetMaxIndex(wire.MaxIndexV6)
	} else {
		c.maxIndex = wire.MaxIndexV3
	}
	c.wmu.Unlock()
	return nil
}

// ReadPacket returns the next whole packet, raw chunks substituted and an
// integer type mapped to its name.
func (c *Conn) ReadPacket() (Packet, error) {
	for {
		f, err := c.r.ReadFrame()
		if err != nil {
			return nil, err
		}
		p, err := c.decodeFrame(f)
		if err != nil || p != nil {
			return p, err
		}
	}
}

// decodeFrame handles one frame: nil, nil for a raw chunk stored for later.
func (c *Conn) decodeFrame(f wire.Frame) (Packet, error) {
	if c.meter == nil {
		c.meter = budget.New(c.budget)
	}
	m := c.meter
	if f.Header.Index == 0 {
		c.meter = nil // the next frame starts the next packet
	}
	payload := f.Payload
	if f.Header.Level != 0 {
		var err error
		if payload, err = compress.DecompressWithin(f.Header.Level, payload, c.maxDecompressed, m); err != nil {
			return nil, fmt.Errorf("%v: %w", f.Header, err)
		}
	}
	if f.Header.Index > 0 {
		return nil, c.rc.Add(f.Header.Index, payload)
	}
	p, err := DecodeWithin(f.Header.Encoding(), payload, m)
	if err != nil {
		c.rc.Reset()
		return nil, err
	}
	if err := c.rc.Apply(p); err != nil {
		return nil, err
	}
	name, err := packet.Type(p, c.announced)
	if err != nil {
		return nil, err
	}
	p[0] = name
	return p, nil
}

// Decode turns a main chunk's payload into a packet, with no budget.
func Decode(e wire.Encoding, payload []byte) (Packet, error) {
	return DecodeWithin(e, payload, nil)
}

// DecodeWithin turns a main chunk's payload into a packet, charging m.
func DecodeWithin(e wire.Encoding, payload []byte, m *budget.Meter) (Packet, error) {
	var v any
	var err error
	switch e {
	case wire.Rencode:
		v, err = rencode.DecodeWithin(payload, rencode.Legacy, m)
	case wire.RencodePlus:
		v, err = rencode.DecodeWithin(payload, rencode.Plus, m)
	case wire.Bencode:
		v, err = bencode.DecodeWithin(payload, m)
	default:
		return nil, fmt.Errorf("%v packets are not supported", e)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding %v packet: %w", e, err)
	}
	p, ok := v.([]any)
	if !ok || len(p) == 0 {
		return nil, fmt.Errorf("decoding %v packet: want a non-empty list, got %T", e, v)
	}
	return p, nil
}

// Encode turns a packet into a main chunk payload.
func Encode(dst []byte, e wire.Encoding, p Packet) ([]byte, error) {
	switch e {
	case wire.Rencode:
		return rencode.Append(dst, p, rencode.Legacy)
	case wire.RencodePlus:
		return rencode.Append(dst, p, rencode.Plus)
	case wire.Bencode:
		return bencode.Append(dst, p)
	}
	return nil, fmt.Errorf("%v packets are not supported", e)
}

// WritePacket encodes and sends a packet. Large binary items go first as
// raw chunks, as xpra sends pixel data.
func (c *Conn) WritePacket(p Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var bufs net.Buffers
	main := p
	if c.rawChunks {
		for i := 1; i < len(p) && i <= c.maxIndex && len(bufs) < 2*wire.MaxPendingRaw; i++ {
			b, ok := p[i].([]byte)
			if !ok || len(b) < RawChunkSize {
				continue
			}
			if len(bufs) == 0 {
				main = append(Packet(nil), p...)
			}
			main[i] = []byte{}
			hdr, payload, err := c.seal(wire.Header{Index: byte(i)}, b)
			if err != nil {
				return err
			}
			bufs = append(bufs, hdr, payload)
		}
	}
	payload, err := Encode(nil, c.encoding, main)
	if err != nil {
		return fmt.Errorf("encoding %v packet: %w", p[0], err)
	}
	h := wire.Header{Flags: c.encoding.Flag()}
	if c.flush {
		h.Flags |= wire.FlagFlush
	}
	if c.algo != compress.None && len(payload) > MinCompressSize {
		compressed, level, err := compress.Compress(c.algo, c.level, payload)
		if err != nil {
			return fmt.Errorf("compressing %v packet: %w", p[0], err)
		}
		payload, h.Level = compressed, level
	}
	hdr, payload, err := c.seal(h, payload)
	if err != nil {
		return err
	}
	if len(payload) < joinSize {
		hdr = append(hdr, payload...)
		bufs = append(bufs, hdr)
	} else {
		bufs = append(bufs, hdr, payload)
	}
	n, err := bufs.WriteTo(c.writer())
	c.written.Add(n)
	if err != nil {
		return fmt.Errorf("sending %v packet: %w", p[0], err)
	}
	return nil
}

// Written is how many bytes WritePacket and WriteFrames have written.
func (c *Conn) Written() int64 { return c.written.Load() }

// seal encrypts a chunk when a cipher is set and returns its header bytes.
func (c *Conn) seal(h wire.Header, payload []byte) ([]byte, []byte, error) {
	if len(payload) > wire.AbsMaxSize {
		return nil, nil, fmt.Errorf("chunk of %d bytes exceeds the %d byte maximum", len(payload), wire.AbsMaxSize)
	}
	h.Size = uint32(len(payload))
	if c.enc != nil {
		wireBytes, size := c.enc.Seal(nil, payload)
		h.Flags |= wire.FlagCipher
		h.Size = uint32(size)
		payload = wireBytes
	}
	room := wire.HeaderSize
	if len(payload) < joinSize {
		room += len(payload) // WritePacket joins small payloads to their header
	}
	return wire.AppendHeader(make([]byte, 0, room), h), payload, nil
}

// Splitter is a stream whose reading and writing halves differ (bytes
// handed over from another reader first, then the socket). Writes go to
// Writer() itself, so a *net.TCPConn still gets one writev per packet.
type Splitter interface {
	io.ReadWriter
	WriteHalf() io.Writer
}

func (c *Conn) writer() io.Writer {
	if s, ok := c.rw.(Splitter); ok {
		return s.WriteHalf()
	}
	return c.rw
}

// DisconnectError is a peer's disconnect packet or plain-text disconnect line.
type DisconnectError struct {
	Reason  string
	Details []string
}

func (e *DisconnectError) Error() string {
	if len(e.Details) == 0 {
		return fmt.Sprintf("disconnected by peer: %s", e.Reason)
	}
	return fmt.Sprintf("disconnected by peer: %s (%s)", e.Reason, strings.Join(e.Details, ", "))
}
