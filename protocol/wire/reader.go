// SPDX-License-Identifier: GPL-2.0-or-later

package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Errors a caller may want to tell apart (wrapped with detail).
var (
	ErrInvalidHeader = errors.New("invalid packet header")
	ErrTooLarge      = errors.New("packet too large")
	ErrCipher        = errors.New("encryption mismatch")
)

// TextMessage is what a peer sent instead of a chunk header at the start of
// the stream: xpra writes "disconnect: <reason>\n" in plain text before it
// has parsed our hello, or an HTTP error page (PROTOCOL.md §1.6).
type TextMessage struct {
	Text string // the first line, without the newline
}

func (t *TextMessage) Error() string {
	return fmt.Sprintf("peer sent text instead of an xpra packet: %q", t.Text)
}

// Disconnect returns the reason of a "disconnect: ..." line.
func (t *TextMessage) Disconnect() (string, bool) {
	reason, ok := strings.CutPrefix(t.Text, "disconnect: ")
	return reason, ok
}

// MaxTextLine bounds how much of a plain-text reply is read.
const MaxTextLine = 1024

// Decrypter removes the AES layer of a chunk (protocol/cipher implements it).
type Decrypter interface {
	// WireSize is how many payload bytes follow a header announcing size.
	WireSize(size uint32) (int, error)
	// Open decrypts wire (WireSize bytes) into the size plaintext bytes.
	Open(dst, wire []byte, size uint32) ([]byte, error)
}

// Frame is one chunk read from the stream.
type Frame struct {
	Header  Header
	Payload []byte // decrypted, still compressed; owned by the caller
}

// Reader reads frames from a byte stream. It is not safe for concurrent use.
type Reader struct {
	br       *bufio.Reader
	src      io.Reader // what br reads
	maxSize  int
	maxIndex int
	dec      Decrypter
	started  bool
	eager    int // frames up to this size are allocated whole
	alloc    func(int) []byte
}

// readChunk is how much payload memory is committed before the bytes arrive:
// a peer that announces a large chunk and then stalls holds at most this
// much (plus what it actually sent), not the announced size.
const readChunk = 64 << 10

// NewReader reads frames from r with the default limits.
func NewReader(r io.Reader) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &Reader{br: br, src: r, maxSize: DefaultMaxPacketSize, maxIndex: MaxIndexV3}
}

// SetReadAhead changes how much one read from the stream may fetch beyond
// what the caller asked for (64 KiB by default), if nothing is buffered
// now; it reports whether it did. A relay that moves large payloads
// between sockets itself wants little read ahead: what was read ahead it
// copies out again. Payloads larger than the buffer are read straight
// into their own buffers either way.
func (r *Reader) SetReadAhead(n int) bool {
	if r.br.Buffered() > 0 {
		return false
	}
	r.br = bufio.NewReaderSize(r.src, n)
	return true
}

// SetMaxSize sets the per-chunk limit (bytes on the wire), capped at AbsMaxSize.
func (r *Reader) SetMaxSize(n int) {
	r.maxSize = min(max(n, HeaderSize), AbsMaxSize)
}

// MaxSize returns the per-chunk limit.
func (r *Reader) MaxSize() int { return r.maxSize }

// SetMaxIndex sets the largest raw-chunk index accepted (MaxIndexV3 or MaxIndexV6).
func (r *Reader) SetMaxIndex(n int) { r.maxIndex = n }

// SetEagerAlloc makes frames up to n bytes allocate their whole payload
// at once. Before authentication sizes are not trusted and buffers grow as
// bytes arrive; an authenticated relay saves the copies of growing.
// alloc, when set, provides those buffers (a relay recycles them).
func (r *Reader) SetEagerAlloc(n int, alloc func(int) []byte) { r.eager, r.alloc = n, alloc }

// SetDecrypter installs (or with nil removes) the AES layer for what follows.
func (r *Reader) SetDecrypter(d Decrypter) { r.dec = d }

// Buffered returns how many bytes are already read from the stream but not
// yet returned as frames.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// Drain returns the bytes read from the stream but not yet returned as
// frames, and forgets them: what a process handing a connection over to
// another must pass along.
func (r *Reader) Drain() []byte {
	b, _ := r.br.Peek(r.br.Buffered())
	out := append([]byte(nil), b...)
	_, _ = r.br.Discard(len(out))
	return out
}

// ReadFrame reads the next chunk. At the very start of the stream a text line
// instead of a header is returned as a *TextMessage error.
func (r *Reader) ReadFrame() (Frame, error) {
	h, n, err := r.ReadHeader()
	if err != nil {
		return Frame{}, err
	}
	return r.ReadPayload(h, n)
}

// ReadHeader reads and checks the next chunk header as ReadFrame does, and
// leaves its payload (n bytes on the wire) in the stream. The caller either
// calls ReadPayload or takes the n bytes itself: PeekBuffered and Discard
// first, then the stream underneath (a relay moving a large chunk between
// two sockets in the kernel).
func (r *Reader) ReadHeader() (h Header, n int, err error) {
	hb, err := r.br.Peek(HeaderSize)
	if len(hb) > 0 && hb[0] != Magic {
		if !r.started {
			return Header{}, 0, r.readText()
		}
		return Header{}, 0, fmt.Errorf("%w: invalid packet header byte 0x%02x, not an xpra packet", ErrInvalidHeader, hb[0])
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(hb) > 0 {
			return Header{}, 0, fmt.Errorf("%w: stream ended inside a chunk header (%d bytes)", ErrInvalidHeader, len(hb))
		}
		return Header{}, 0, err
	}
	h, err = ParseHeader(hb)
	if err != nil {
		return Header{}, 0, fmt.Errorf("%w: %w", ErrInvalidHeader, err)
	}
	if int(h.Index) > r.maxIndex {
		return Header{}, 0, fmt.Errorf("%w: chunk index %d above the maximum %d", ErrInvalidHeader, h.Index, r.maxIndex)
	}
	wireSize := int(h.Size)
	switch {
	case h.Encrypted() && r.dec == nil:
		return Header{}, 0, fmt.Errorf("%w: invalid encryption packet flag (no cipher configured)", ErrCipher)
	case !h.Encrypted() && r.dec != nil:
		return Header{}, 0, fmt.Errorf("%w: unencrypted packet dropped (a cipher is configured)", ErrCipher)
	case h.Encrypted():
		if wireSize, err = r.dec.WireSize(h.Size); err != nil {
			return Header{}, 0, fmt.Errorf("%w: %w", ErrCipher, err)
		}
	}
	if wireSize > r.maxSize {
		return Header{}, 0, fmt.Errorf("%w: packet size requested is %d but maximum allowed is %d", ErrTooLarge, wireSize, r.maxSize)
	}
	r.started = true
	if _, err := r.br.Discard(HeaderSize); err != nil {
		return Header{}, 0, err
	}
	return h, wireSize, nil
}

// ReadPayload reads the n-byte payload of the header ReadHeader returned
// and decrypts it.
func (r *Reader) ReadPayload(h Header, n int) (Frame, error) {
	payload, err := r.readN(n)
	if err != nil {
		return Frame{}, fmt.Errorf("reading %s payload: %w", h, err)
	}
	if h.Encrypted() {
		if payload, err = r.dec.Open(payload[:0], payload, h.Size); err != nil {
			return Frame{}, fmt.Errorf("%w: %w", ErrCipher, err)
		}
	}
	return Frame{Header: h, Payload: payload}, nil
}

// PeekBuffered returns up to n of the bytes already buffered, without
// reading the stream or consuming them: valid until the next call on r.
func (r *Reader) PeekBuffered(n int) []byte {
	b, _ := r.br.Peek(min(n, r.br.Buffered())) // never reads: at most Buffered
	return b
}

// Discard consumes n bytes, as a caller that took a payload itself must.
func (r *Reader) Discard(n int) error {
	_, err := r.br.Discard(n)
	return err
}

// readN reads exactly n bytes. The buffer doubles as data arrives instead of
// being sized from the header up front.
func (r *Reader) readN(n int) ([]byte, error) {
	if n <= r.eager {
		// A trusted size: one allocation, no copies while growing.
		var buf []byte
		if r.alloc != nil {
			buf = r.alloc(n)
		} else {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r.br, buf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("stream ended before %d bytes: %w", n, io.ErrUnexpectedEOF)
			}
			return nil, err
		}
		return buf, nil
	}
	buf := make([]byte, min(n, readChunk))
	got := 0
	for {
		m, err := io.ReadFull(r.br, buf[got:])
		got += m
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("stream ended after %d of %d bytes: %w", got, n, io.ErrUnexpectedEOF)
			}
			return nil, err
		}
		if got == n {
			return buf, nil
		}
		buf = append(buf, make([]byte, min(n-len(buf), len(buf)))...)
	}
}

// readText consumes one line (bounded) of a plain-text reply.
func (r *Reader) readText() error {
	var line []byte
	for len(line) < MaxTextLine {
		b, err := r.br.ReadByte()
		if err != nil || b == '\n' {
			break
		}
		line = append(line, b)
	}
	return &TextMessage{Text: string(bytes.TrimRight(line, "\r"))}
}
