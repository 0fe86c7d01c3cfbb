// SPDX-License-Identifier: GPL-2.0-or-later

// Package bencode reads and writes xpra 3.1's bencode variant (PROTOCOL.md
// §2.4): i<int>e, <len>:<bytes>, l…e, d…e with keys in insertion order,
// booleans as integers, no floats and no None; the decoder also takes
// "u<len>:<utf8>" text. 3.1 peers fall back to it only when rencode is off,
// so it matters for decoding what such a peer sends.
//
// Plain strings decode as []byte (the format cannot tell text from binary),
// "u" strings as string. Decoded []byte values alias the input.
package bencode

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"

	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// MaxDepth bounds nesting so hostile input cannot exhaust the stack.
const MaxDepth = 128

// maxIntDigits bounds integers: Python would take any size, but nothing
// xpra sends needs more than a 64-bit value, and big.Int parsing of
// megabytes of digits is quadratic.
const maxIntDigits = 64

// ErrTrailing is returned when bytes follow the single top-level value,
// which the 3.1 receiver also refuses.
var ErrTrailing = errors.New("bencode: trailing bytes after value")

// Decode decodes exactly one value filling all of b, with no budget but
// the nesting limit (MaxDepth).
func Decode(b []byte) (any, error) { return DecodeWithin(b, nil) }

// DecodeWithin decodes exactly one value filling all of b, charging m for
// every value and allocation (package budget has the costs); it stops at
// the first charge over m's limits with an error wrapping
// budget.ErrExceeded. A nil m has no limits but MaxDepth.
func DecodeWithin(b []byte, m *budget.Meter) (any, error) {
	d := decoder{b: b, m: m}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(b) {
		return nil, fmt.Errorf("%w (%d of %d bytes used)", ErrTrailing, d.pos, len(b))
	}
	return v, nil
}

type decoder struct {
	b   []byte
	pos int
	m   *budget.Meter
}

// charge counts one value costing cost bytes of Go memory.
func (d *decoder) charge(cost int) error {
	if err := d.m.Item(cost); err != nil {
		return fmt.Errorf("bencode at offset %d: %w", d.pos, err)
	}
	return nil
}

// grow makes room for one more element in an array of size-byte
// elements, charging the budget for the new array: append would grow it
// out of the budget's sight.
func grow[T any](d *decoder, s []T, size int) ([]T, error) {
	if len(s) < cap(s) {
		return s, nil
	}
	if err := d.m.Grow(max(4, 2*cap(s)), size); err != nil {
		return nil, fmt.Errorf("bencode at offset %d: %w", d.pos, err)
	}
	n := make([]T, len(s), max(4, 2*cap(s)))
	copy(n, s)
	return n, nil
}

func (d *decoder) fail(msg string, args ...any) error {
	return fmt.Errorf("bencode: %s at offset %d", fmt.Sprintf(msg, args...), d.pos)
}

func (d *decoder) value(depth int) (any, error) {
	if err := d.m.Deeper(depth, MaxDepth); err != nil {
		return nil, fmt.Errorf("bencode at offset %d: %w", d.pos, err)
	}
	if d.pos >= len(d.b) {
		return nil, d.fail("truncated input")
	}
	switch c := d.b[d.pos]; {
	case c == 'i':
		// Most integers box into 8 bytes; the rare big one is bounded
		// by maxIntDigits.
		if err := d.charge(budget.ScalarBox); err != nil {
			return nil, err
		}
		return d.integer()
	case c == 'l':
		if err := d.charge(budget.SliceBox); err != nil {
			return nil, err
		}
		d.pos++
		l := []any{}
		for {
			if d.pos >= len(d.b) {
				return nil, d.fail("unterminated list")
			}
			if d.b[d.pos] == 'e' {
				d.pos++
				return l, nil
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if l, err = grow(d, l, budget.SlotCost); err != nil {
				return nil, err
			}
			l = append(l, v)
		}
	case c == 'd':
		if err := d.charge(budget.SliceBox); err != nil {
			return nil, err
		}
		d.pos++
		m := value.Dict{}
		for {
			if d.pos >= len(d.b) {
				return nil, d.fail("unterminated dict")
			}
			if d.b[d.pos] == 'e' {
				d.pos++
				return m, nil
			}
			k, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			switch k.(type) {
			case []any, value.Dict:
				return nil, d.fail("unhashable dict key of type %s", value.TypeName(k))
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if m, err = grow(d, m, budget.ItemCost); err != nil {
				return nil, err
			}
			m = append(m, value.Item{Key: k, Value: v})
		}
	case c == 'u':
		d.pos++
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		if err := d.charge(budget.StringBox + len(s)); err != nil {
			return nil, err
		}
		return string(s), nil
	case c >= '0' && c <= '9':
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		if err := d.charge(budget.SliceBox); err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, d.fail("invalid type character %q", c)
	}
}

func (d *decoder) integer() (any, error) {
	d.pos++ // 'i'
	start := d.pos
	for d.pos < len(d.b) && d.b[d.pos] != 'e' {
		if d.pos-start >= maxIntDigits {
			return nil, d.fail("integer longer than %d digits", maxIntDigits)
		}
		d.pos++
	}
	if d.pos >= len(d.b) {
		return nil, d.fail("unterminated integer")
	}
	text := string(d.b[start:d.pos])
	d.pos++
	if text == "" || text[0] == '+' {
		return nil, fmt.Errorf("bencode: invalid integer %q at offset %d", text, start)
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, nil
	}
	n, ok := new(big.Int).SetString(text, 10)
	if !ok {
		return nil, fmt.Errorf("bencode: invalid integer %q at offset %d", text, start)
	}
	return n, nil
}

func (d *decoder) str() ([]byte, error) {
	n := 0
	start := d.pos
	for ; d.pos < len(d.b) && d.b[d.pos] >= '0' && d.b[d.pos] <= '9'; d.pos++ {
		if d.pos-start >= 10 {
			return nil, d.fail("string length has too many digits")
		}
		n = n*10 + int(d.b[d.pos]-'0')
	}
	if d.pos == start {
		return nil, d.fail("missing string length")
	}
	if d.pos >= len(d.b) || d.b[d.pos] != ':' {
		return nil, d.fail("string length not followed by ':'")
	}
	d.pos++
	if len(d.b)-d.pos < n {
		return nil, d.fail("truncated string: need %d bytes, have %d", n, len(d.b)-d.pos)
	}
	s := d.b[d.pos : d.pos+n : d.pos+n]
	d.pos += n
	return s, nil
}

// Encode returns the encoding of v.
func Encode(v any) ([]byte, error) { return Append(nil, v) }

// Append appends the encoding of v to dst. Text is written as a plain
// string, as xpra's encoder does; floats and None cannot be encoded.
func Append(dst []byte, v any) ([]byte, error) { return appendValue(dst, v, 0) }

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return dst, fmt.Errorf("bencode: value nested deeper than %d", MaxDepth)
	}
	var err error
	switch x := v.(type) {
	case bool:
		if x {
			return append(dst, "i1e"...), nil
		}
		return append(dst, "i0e"...), nil
	case *big.Int:
		dst = append(dst, 'i')
		dst = x.Append(dst, 10)
		return append(dst, 'e'), nil
	case string:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case []byte:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case []any:
		dst = append(dst, 'l')
		for _, item := range x {
			if dst, err = appendValue(dst, item, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, 'e'), nil
	case []string:
		dst = append(dst, 'l')
		for _, s := range x {
			dst, _ = appendValue(dst, s, depth+1)
		}
		return append(dst, 'e'), nil
	case value.Dict:
		dst = append(dst, 'd')
		for _, it := range x {
			if dst, err = appendValue(dst, it.Key, depth+1); err != nil {
				return dst, err
			}
			if dst, err = appendValue(dst, it.Value, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, 'e'), nil
	}
	if n, ok := value.AsInt(v); ok {
		dst = append(dst, 'i')
		dst = strconv.AppendInt(dst, n, 10)
		return append(dst, 'e'), nil
	}
	return dst, fmt.Errorf("bencode: cannot encode %s", value.TypeName(v))
}
