// SPDX-License-Identifier: GPL-2.0-or-later

// Package rencode reads and writes rencode, the packet encoder of xpra 3.1
// (Dialect Legacy, python3-rencode 1.0.6) and rencodeplus, the only binary
// encoder of xpra 6.x (Dialect Plus). PROTOCOL.md §2.2 and §2.3 give the
// type codes; this is our own implementation of them.
//
// Decoding maps wire data onto the value model of package value. Legacy
// strings decode as []byte because the format cannot tell text from binary;
// rencodeplus keeps the distinction (str → string, bytes → []byte). Decoded
// []byte values alias the input buffer: no copy is made, so the caller must
// not reuse the buffer while the values are alive.
package rencode

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"

	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// Dialect selects rencode (3.1) or rencodeplus (6.x).
type Dialect int

const (
	// Legacy is python3-rencode 1.0.6 as used by xpra 3.1.
	Legacy Dialect = iota
	// Plus is xpra's rencodeplus (4.3 and later).
	Plus
)

func (d Dialect) String() string {
	if d == Plus {
		return "rencodeplus"
	}
	return "rencode"
}

// Type codes (PROTOCOL.md §2.2).
const (
	intPosFixedStart = 0
	intPosFixedCount = 44
	chrFloat64       = 44
	chrList          = 59
	chrDict          = 60
	chrBigInt        = 61
	chrInt1          = 62
	chrInt2          = 63
	chrInt4          = 64
	chrInt8          = 65
	chrFloat32       = 66
	chrTrue          = 67
	chrFalse         = 68
	chrNone          = 69
	intNegFixedStart = 70
	intNegFixedCount = 32
	dictFixedStart   = 102
	dictFixedCount   = 25
	chrTerm          = 127
	strFixedStart    = 128
	strFixedCount    = 64
	listFixedStart   = 192
	listFixedCount   = 64
)

// Limits on what a decoder accepts. Nesting is bounded so hostile input
// cannot exhaust the stack; big integers as rencode bounds them.
const (
	MaxDepth     = 128
	maxBigDigits = 64
)

// ErrTrailing is returned when bytes follow the single top-level value.
var ErrTrailing = errors.New("rencode: trailing bytes after value")

// SyntaxError describes malformed input and where it was found.
type SyntaxError struct {
	Dialect Dialect
	Offset  int
	Msg     string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s: %s at offset %d", e.Dialect, e.Msg, e.Offset)
}

// Decode decodes exactly one value filling all of b, with no budget but
// the nesting limit (MaxDepth): for bytes from a trusted source or already
// bounded by other means.
func Decode(b []byte, d Dialect) (any, error) { return DecodeWithin(b, d, nil) }

// DecodeWithin decodes exactly one value filling all of b, charging m for
// every value and allocation as it goes (see package budget for the
// costs); it stops at the first charge over m's limits with an error
// wrapping budget.ErrExceeded. A nil m has no limits but MaxDepth.
func DecodeWithin(b []byte, d Dialect, m *budget.Meter) (any, error) {
	dec := decoder{b: b, d: d, m: m}
	v, err := dec.value(0)
	if err != nil {
		return nil, err
	}
	if dec.pos != len(b) {
		return nil, fmt.Errorf("%w (%d of %d bytes used)", ErrTrailing, dec.pos, len(b))
	}
	return v, nil
}

type decoder struct {
	b   []byte
	pos int
	d   Dialect
	m   *budget.Meter
}

// charge counts one value costing cost bytes of Go memory.
func (dec *decoder) charge(cost int) error {
	if err := dec.m.Item(cost); err != nil {
		return fmt.Errorf("%s at offset %d: %w", dec.d, dec.pos, err)
	}
	return nil
}

func (dec *decoder) fail(msg string, args ...any) error {
	return &SyntaxError{Dialect: dec.d, Offset: dec.pos, Msg: fmt.Sprintf(msg, args...)}
}

func (dec *decoder) need(n int) error {
	if n < 0 || len(dec.b)-dec.pos < n {
		return dec.fail("truncated input: need %d bytes, have %d", n, len(dec.b)-dec.pos)
	}
	return nil
}

func (dec *decoder) value(depth int) (any, error) {
	if err := dec.m.Deeper(depth, MaxDepth); err != nil {
		return nil, fmt.Errorf("%s at offset %d: %w", dec.d, dec.pos, err)
	}
	if err := dec.need(1); err != nil {
		return nil, err
	}
	c := dec.b[dec.pos]
	// Each case charges the value before it allocates: small non-negative
	// integers box without an allocation, other scalars take 8 bytes,
	// slices and strings a boxed header (strings also their copy).
	switch {
	case c < intPosFixedCount:
		if err := dec.charge(0); err != nil {
			return nil, err
		}
		dec.pos++
		return int64(c), nil
	case c >= intNegFixedStart && c < intNegFixedStart+intNegFixedCount:
		if err := dec.charge(budget.ScalarBox); err != nil {
			return nil, err
		}
		dec.pos++
		return -int64(c - intNegFixedStart + 1), nil
	case c >= strFixedStart && c < strFixedStart+strFixedCount:
		n := int(c - strFixedStart)
		dec.pos++
		if err := dec.need(n); err != nil {
			return nil, err
		}
		if err := dec.chargeString(n, dec.d == Plus); err != nil {
			return nil, err
		}
		s := dec.b[dec.pos : dec.pos+n : dec.pos+n]
		dec.pos += n
		if dec.d == Plus {
			return string(s), nil
		}
		return s, nil
	case c >= listFixedStart:
		n := int(c - listFixedStart)
		dec.pos++
		return dec.list(depth, n)
	case c >= dictFixedStart && c < dictFixedStart+dictFixedCount:
		n := int(c - dictFixedStart)
		dec.pos++
		return dec.dict(depth, n)
	case c >= '0' && c <= '9':
		return dec.lenString()
	}
	switch c {
	case chrFloat64, chrFloat32, chrInt1, chrInt2, chrInt4, chrInt8:
		if err := dec.charge(budget.ScalarBox); err != nil {
			return nil, err
		}
	case chrTrue, chrFalse, chrNone:
		if err := dec.charge(0); err != nil {
			return nil, err
		}
	case chrBigInt:
		if err := dec.charge(budget.BigIntCost); err != nil {
			return nil, err
		}
	}
	switch c {
	case chrFloat64:
		if err := dec.need(9); err != nil {
			return nil, err
		}
		v := math.Float64frombits(be64(dec.b[dec.pos+1:]))
		dec.pos += 9
		return v, nil
	case chrFloat32:
		if err := dec.need(5); err != nil {
			return nil, err
		}
		v := math.Float32frombits(uint32(be64pad(dec.b[dec.pos+1:], 4)))
		dec.pos += 5
		return v, nil
	case chrInt1, chrInt2, chrInt4, chrInt8:
		n := 1 << (c - chrInt1)
		if err := dec.need(1 + n); err != nil {
			return nil, err
		}
		u := be64pad(dec.b[dec.pos+1:], n)
		dec.pos += 1 + n
		shift := uint(64 - 8*n)
		return int64(u<<shift) >> shift, nil
	case chrTrue:
		dec.pos++
		return true, nil
	case chrFalse:
		dec.pos++
		return false, nil
	case chrNone:
		dec.pos++
		return nil, nil
	case chrList:
		dec.pos++
		return dec.list(depth, -1)
	case chrDict:
		dec.pos++
		return dec.dict(depth, -1)
	case chrBigInt:
		return dec.bigInt()
	}
	return nil, dec.fail("invalid type code %d", c)
}

// lenString reads "<digits>:<bytes>" (and rencodeplus "<digits>/<bytes>").
func (dec *decoder) lenString() (any, error) {
	start := dec.pos
	if dec.d == Legacy && dec.b[start] == '0' {
		// rencode 1.0.6 has no type code 48: empty strings are always 0x80.
		return nil, dec.fail("invalid type code 48")
	}
	i := start
	n := 0
	for ; i < len(dec.b) && dec.b[i] >= '0' && dec.b[i] <= '9'; i++ {
		if i-start >= 10 {
			return nil, dec.fail("string length has too many digits")
		}
		n = n*10 + int(dec.b[i]-'0')
	}
	if i >= len(dec.b) {
		return nil, dec.fail("truncated string length")
	}
	sep := dec.b[i]
	if sep != ':' && (sep != '/' || dec.d != Plus) {
		return nil, dec.fail("invalid string length separator %q", sep)
	}
	dec.pos = i + 1
	if err := dec.need(n); err != nil {
		return nil, err
	}
	if err := dec.chargeString(n, dec.d == Plus && sep == ':'); err != nil {
		return nil, err
	}
	s := dec.b[dec.pos : dec.pos+n : dec.pos+n]
	dec.pos += n
	if dec.d == Plus && sep == ':' {
		return string(s), nil
	}
	return s, nil
}

// chargeString counts a string of n bytes: text is copied out of the
// input, binary aliases it.
func (dec *decoder) chargeString(n int, text bool) error {
	if text {
		return dec.charge(budget.StringBox + n)
	}
	return dec.charge(budget.SliceBox)
}

func (dec *decoder) bigInt() (any, error) {
	dec.pos++
	start := dec.pos
	for dec.pos < len(dec.b) && dec.b[dec.pos] != chrTerm {
		if dec.pos-start >= maxBigDigits {
			return nil, dec.fail("big integer longer than %d digits", maxBigDigits)
		}
		dec.pos++
	}
	if dec.pos >= len(dec.b) {
		return nil, dec.fail("unterminated big integer")
	}
	text := string(dec.b[start:dec.pos])
	dec.pos++
	v, ok := new(big.Int).SetString(text, 10)
	if !ok {
		return nil, &SyntaxError{Dialect: dec.d, Offset: start, Msg: fmt.Sprintf("invalid big integer %q", text)}
	}
	return v, nil
}

// list reads n items, or items up to a terminator when n < 0.
func (dec *decoder) list(depth, n int) (any, error) {
	// Each item takes at least one byte, which bounds the allocation by the
	// input size rather than by a count the peer chose.
	capHint := n
	if capHint < 0 {
		capHint = 4
	}
	if rest := len(dec.b) - dec.pos; capHint > rest {
		capHint = rest
	}
	if err := dec.charge(budget.SliceBox); err != nil {
		return nil, err
	}
	if err := dec.m.Grow(capHint, budget.SlotCost); err != nil {
		return nil, fmt.Errorf("%s at offset %d: %w", dec.d, dec.pos, err)
	}
	l := make([]any, 0, capHint)
	for i := 0; n < 0 || i < n; i++ {
		if n < 0 {
			if err := dec.need(1); err != nil {
				return nil, err
			}
			if dec.b[dec.pos] == chrTerm {
				dec.pos++
				return l, nil
			}
		}
		v, err := dec.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if len(l) == cap(l) {
			// Grown here rather than by append, so the budget sees it.
			if err := dec.m.Grow(growCap(cap(l)), budget.SlotCost); err != nil {
				return nil, fmt.Errorf("%s at offset %d: %w", dec.d, dec.pos, err)
			}
			nl := make([]any, len(l), growCap(cap(l)))
			copy(nl, l)
			l = nl
		}
		l = append(l, v)
	}
	return l, nil
}

// growCap doubles an array's capacity, as append does for small arrays.
func growCap(c int) int { return max(4, 2*c) }

func (dec *decoder) dict(depth, n int) (any, error) {
	capHint := n
	if capHint < 0 {
		capHint = 8
	}
	if rest := (len(dec.b) - dec.pos) / 2; capHint > rest {
		capHint = rest
	}
	if err := dec.charge(budget.SliceBox); err != nil {
		return nil, err
	}
	if err := dec.m.Grow(capHint, budget.ItemCost); err != nil {
		return nil, fmt.Errorf("%s at offset %d: %w", dec.d, dec.pos, err)
	}
	d := make(value.Dict, 0, capHint)
	for i := 0; n < 0 || i < n; i++ {
		if n < 0 {
			if err := dec.need(1); err != nil {
				return nil, err
			}
			if dec.b[dec.pos] == chrTerm {
				dec.pos++
				return d, nil
			}
		}
		k, err := dec.value(depth + 1)
		if err != nil {
			return nil, err
		}
		switch k.(type) {
		case []any, value.Dict:
			// Python cannot hash a list or dict, so no real peer sends one.
			return nil, dec.fail("unhashable dict key of type %s", value.TypeName(k))
		}
		v, err := dec.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if len(d) == cap(d) {
			if err := dec.m.Grow(growCap(cap(d)), budget.ItemCost); err != nil {
				return nil, fmt.Errorf("%s at offset %d: %w", dec.d, dec.pos, err)
			}
			nd := make(value.Dict, len(d), growCap(cap(d)))
			copy(nd, d)
			d = nd
		}
		d = append(d, value.Item{Key: k, Value: v})
	}
	return d, nil
}

func be64(b []byte) uint64 { return be64pad(b, 8) }

func be64pad(b []byte, n int) uint64 {
	var u uint64
	for i := 0; i < n; i++ {
		u = u<<8 | uint64(b[i])
	}
	return u
}

// Encode returns the encoding of v.
func Encode(v any, d Dialect) ([]byte, error) {
	return Append(nil, v, d)
}

// Append appends the encoding of v to dst.
func Append(dst []byte, v any, d Dialect) ([]byte, error) {
	return appendValue(dst, v, d, 0)
}

func appendValue(dst []byte, v any, d Dialect, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return dst, fmt.Errorf("%s: value nested deeper than %d", d, MaxDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(dst, chrNone), nil
	case bool:
		if x {
			return append(dst, chrTrue), nil
		}
		return append(dst, chrFalse), nil
	case int64:
		return appendInt(dst, x), nil
	case int:
		return appendInt(dst, int64(x)), nil
	case int32:
		return appendInt(dst, int64(x)), nil
	case int16:
		return appendInt(dst, int64(x)), nil
	case int8:
		return appendInt(dst, int64(x)), nil
	case uint8:
		return appendInt(dst, int64(x)), nil
	case uint16:
		return appendInt(dst, int64(x)), nil
	case uint32:
		return appendInt(dst, int64(x)), nil
	case uint:
		return appendUint(dst, uint64(x))
	case uint64:
		return appendUint(dst, x)
	case *big.Int:
		if x.IsInt64() {
			return appendInt(dst, x.Int64()), nil
		}
		s := x.String()
		if len(s) >= maxBigDigits {
			return dst, fmt.Errorf("%s: integer %s too large to encode", d, s)
		}
		dst = append(dst, chrBigInt)
		dst = append(dst, s...)
		return append(dst, chrTerm), nil
	case float32:
		if d == Plus {
			return appendFloat64(dst, float64(x)), nil
		}
		dst = append(dst, chrFloat32)
		u := math.Float32bits(x)
		return append(dst, byte(u>>24), byte(u>>16), byte(u>>8), byte(u)), nil
	case float64:
		return appendFloat64(dst, x), nil
	case string:
		return appendString(dst, x, false, d), nil
	case []byte:
		return appendString(dst, x, true, d), nil
	case []any:
		var err error
		if len(x) < listFixedCount {
			dst = append(dst, byte(listFixedStart+len(x)))
		} else {
			dst = append(dst, chrList)
		}
		for _, item := range x {
			if dst, err = appendValue(dst, item, d, depth+1); err != nil {
				return dst, err
			}
		}
		if len(x) >= listFixedCount {
			dst = append(dst, chrTerm)
		}
		return dst, nil
	case []string:
		l := make([]any, len(x))
		for i, s := range x {
			l[i] = s
		}
		return appendValue(dst, l, d, depth)
	case value.Dict:
		var err error
		if len(x) < dictFixedCount {
			dst = append(dst, byte(dictFixedStart+len(x)))
		} else {
			dst = append(dst, chrDict)
		}
		for _, it := range x {
			if dst, err = appendValue(dst, it.Key, d, depth+1); err != nil {
				return dst, err
			}
			if dst, err = appendValue(dst, it.Value, d, depth+1); err != nil {
				return dst, err
			}
		}
		if len(x) >= dictFixedCount {
			dst = append(dst, chrTerm)
		}
		return dst, nil
	}
	return dst, fmt.Errorf("%s: cannot encode %s", d, value.TypeName(v))
}

func appendUint(dst []byte, u uint64) ([]byte, error) {
	if u <= math.MaxInt64 {
		return appendInt(dst, int64(u)), nil
	}
	dst = append(dst, chrBigInt)
	dst = strconv.AppendUint(dst, u, 10)
	return append(dst, chrTerm), nil
}

func appendInt(dst []byte, x int64) []byte {
	switch {
	case x >= 0 && x < intPosFixedCount:
		return append(dst, byte(intPosFixedStart+x))
	case x < 0 && x >= -intNegFixedCount:
		return append(dst, byte(intNegFixedStart-1-x))
	case x >= math.MinInt8 && x <= math.MaxInt8:
		return append(dst, chrInt1, byte(x))
	case x >= math.MinInt16 && x <= math.MaxInt16:
		return append(dst, chrInt2, byte(x>>8), byte(x))
	case x >= math.MinInt32 && x <= math.MaxInt32:
		return append(dst, chrInt4, byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
	}
	return append(dst, chrInt8, byte(x>>56), byte(x>>48), byte(x>>40), byte(x>>32),
		byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
}

func appendFloat64(dst []byte, f float64) []byte {
	u := math.Float64bits(f)
	return append(dst, chrFloat64, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32),
		byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
}

// appendString writes text or binary. Legacy rencode writes both alike;
// rencodeplus writes bytes as "<len>/" so the peer gets bytes back.
func appendString[S string | []byte](dst []byte, s S, binary bool, d Dialect) []byte {
	switch {
	case d == Plus && binary:
		dst = strconv.AppendInt(dst, int64(len(s)), 10)
		dst = append(dst, '/')
	case len(s) < strFixedCount:
		dst = append(dst, byte(strFixedStart+len(s)))
	default:
		dst = strconv.AppendInt(dst, int64(len(s)), 10)
		dst = append(dst, ':')
	}
	return append(dst, s...)
}
