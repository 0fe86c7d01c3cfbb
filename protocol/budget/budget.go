// SPDX-License-Identifier: GPL-2.0-or-later

// Package budget bounds what decoding one packet may cost: the Go memory
// its values take (decompressed bytes included), how many values it holds
// and how deep they nest. A packet limit bounds bytes on the wire only: a
// 4 KB zlib chunk can hold millions of empty lists, each a slice header
// boxed in an interface in its parent's array (40 bytes or more of Go
// memory for one byte of rencode), so without a budget a hostile peer
// turns a small packet into hundreds of megabytes.
//
// A Meter is made per packet from Limits; decompressors and decoders
// charge it as they allocate and stop at the first charge over a limit,
// with an error wrapping ErrExceeded.
package budget

import (
	"errors"
	"fmt"
	"math"
)

// ErrExceeded is wrapped by every refusal for being over a budget.
var ErrExceeded = errors.New("decoding budget exceeded")

// Limits bound one packet's decoding. Zero or negative means no limit.
type Limits struct {
	Bytes int64 // Go memory of the decoded values, decompressed bytes included
	Items int64 // values (every list, dict, string, number, ... counts one)
	Depth int   // nesting of lists and dicts
}

// Go costs of decoded values on a 64-bit platform, as the decoders
// allocate them: an interface slot in the parent's array, the boxed
// header an interface holds for a slice or string, a dict item.
const (
	SlotCost   = 16 // an `any` in a []any
	ItemCost   = 32 // a value.Item (key and value)
	SliceBox   = 24 // a slice header boxed into an interface
	StringBox  = 16 // a string header boxed into an interface
	ScalarBox  = 8  // an int64 or float64 boxed into an interface
	BigIntCost = 64 // a *big.Int of at most 64 digits, with its words
)

// Depth of any packet before authentication. The deepest packet xpra
// sends (a 6.x info-response) nests about ten levels; hellos five.
const preauthDepth = 32

// ForPacket derives limits from a packet limit (bytes on the wire of one
// chunk): decoding may allocate 4× the limit in Go memory, counting the
// decompression buffers and outgrown arrays, and hold one value per 32
// wire bytes of the limit. For 1 MiB: 4 MiB and 32768 values. The largest
// packet of the real captures (a 3.1 server's, after authentication)
// costs 0.85 MB and 15664 values; hellos far less. Tighter would refuse
// real packets; looser costs CPU as well as memory (a refused 1 MiB of
// empty lists took 68 ms of CPU at 8× and 131072 values).
func ForPacket(limit int) Limits {
	if limit <= 0 {
		return Limits{}
	}
	return Limits{Bytes: 4 * int64(limit), Items: max(int64(limit)/32, 4096), Depth: preauthDepth}
}

// Meter counts what one packet has cost so far. The zero Meter and a nil
// *Meter have no limits.
type Meter struct {
	lim   Limits
	bytes int64
	items int64
}

// New returns a meter for one packet.
func New(l Limits) *Meter { return &Meter{lim: l} }

// Limits returns the meter's limits.
func (m *Meter) Limits() Limits {
	if m == nil {
		return Limits{}
	}
	return m.lim
}

// Used returns the bytes and items charged so far.
func (m *Meter) Used() (bytes, items int64) {
	if m == nil {
		return 0, 0
	}
	return m.bytes, m.items
}

// Alloc charges n bytes of Go memory.
func (m *Meter) Alloc(n int) error {
	if m == nil || n <= 0 {
		return nil
	}
	m.bytes += int64(n)
	if m.lim.Bytes > 0 && m.bytes > m.lim.Bytes {
		return &ExceededError{What: "bytes", Limit: m.lim.Bytes}
	}
	return nil
}

// Item charges one value and its cost in bytes.
func (m *Meter) Item(cost int) error {
	if m == nil {
		return nil
	}
	m.items++
	if m.lim.Items > 0 && m.items > m.lim.Items {
		return &ExceededError{What: "items", Limit: m.lim.Items}
	}
	return m.Alloc(cost)
}

// Grow charges a new array of newCap elements of size bytes each, made
// to replace a full one. The whole new array is charged, not the growth:
// the old one was allocated too and is garbage only until the next
// collection, so the budget bounds what a packet allocates in total.
func (m *Meter) Grow(newCap, size int) error {
	if newCap <= 0 {
		return nil
	}
	if newCap > math.MaxInt/size {
		return &ExceededError{What: "bytes", Limit: m.Limits().Bytes}
	}
	return m.Alloc(newCap * size)
}

// Deeper checks nesting level depth (the top value is depth 0) against
// the limit and an absolute ceiling the caller keeps for its stack.
func (m *Meter) Deeper(depth, ceiling int) error {
	lim := ceiling
	if l := m.Limits().Depth; l > 0 && l < lim {
		lim = l
	}
	if depth > lim {
		return &ExceededError{What: "depth", Limit: int64(lim)}
	}
	return nil
}

// ExceededError says which budget a packet went over.
type ExceededError struct {
	What  string // "bytes", "items" or "depth"
	Limit int64
}

func (e *ExceededError) Error() string {
	switch e.What {
	case "bytes":
		return fmt.Sprintf("%v: more than %d bytes decompressed and decoded", ErrExceeded, e.Limit)
	case "items":
		return fmt.Sprintf("%v: more than %d values", ErrExceeded, e.Limit)
	}
	return fmt.Sprintf("%v: nested deeper than %d", ErrExceeded, e.Limit)
}

func (e *ExceededError) Unwrap() error { return ErrExceeded }
