// SPDX-License-Identifier: GPL-2.0-or-later

// Package value is the in-memory form of decoded xpra packet data, shared by
// every packet encoder (rencode, rencodeplus, bencode) and the hello caps API.
//
// A decoded value is always one of:
//
//	nil             None
//	bool            True / False
//	int64           any integer that fits in 64 bits
//	*big.Int        rencode's decimal big integers (code 61) beyond int64
//	float32         rencode float32 (code 66), kept so it re-encodes identically
//	float64         rencode float64 (code 44)
//	string          text: rencodeplus str, bencode "u" strings
//	[]byte          binary: every legacy rencode string, rencodeplus bytes,
//	                plain bencode strings
//	[]any           list or tuple
//	Dict            dictionary, in wire order
//
// Keeping string and []byte apart is what lets a packet be re-encoded
// faithfully: rencodeplus writes them differently while legacy rencode does
// not (PROTOCOL.md §2.3, pitfall 4). Encoders also accept Go's other integer
// types as a convenience for code that builds packets.
package value

import (
	"bytes"
	"fmt"
	"math/big"
)

// Item is one key/value pair of a Dict.
type Item struct {
	Key   any
	Value any
}

// Dict is an ordered dictionary. Wire order is kept so a decoded dict
// re-encodes byte for byte; lookups are linear, which is cheaper than a map
// for the small dicts xpra sends and fine for the few hundred keys of a hello.
type Dict []Item

// KeyEquals reports whether a decoded key (string or []byte) spells name.
func KeyEquals(key any, name string) bool {
	switch k := key.(type) {
	case string:
		return k == name
	case []byte:
		return string(k) == name
	}
	return false
}

// Index returns the position of key in d, or -1.
func (d Dict) Index(key string) int {
	for i := range d {
		if KeyEquals(d[i].Key, key) {
			return i
		}
	}
	return -1
}

// Get returns the value stored under key (text or binary spelling).
func (d Dict) Get(key string) (any, bool) {
	if i := d.Index(key); i >= 0 {
		return d[i].Value, true
	}
	return nil, false
}

// Set replaces the value under key, keeping its position and spelling, or
// appends key as text.
func (d *Dict) Set(key string, v any) {
	if i := d.Index(key); i >= 0 {
		(*d)[i].Value = v
		return
	}
	*d = append(*d, Item{Key: key, Value: v})
}

// Delete removes key and reports whether it was present.
func (d *Dict) Delete(key string) bool {
	i := d.Index(key)
	if i < 0 {
		return false
	}
	*d = append((*d)[:i], (*d)[i+1:]...)
	return true
}

// DeleteFunc removes every item whose key (as text) satisfies drop.
func (d *Dict) DeleteFunc(drop func(key string) bool) {
	out := (*d)[:0]
	for _, it := range *d {
		if k, ok := AsString(it.Key); ok && drop(k) {
			continue
		}
		out = append(out, it)
	}
	clear((*d)[len(out):])
	*d = out
}

// AsString returns text for a string or []byte value.
func AsString(v any) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case []byte:
		return string(s), true
	}
	return "", false
}

// AsBytes returns the bytes of a string or []byte value.
func AsBytes(v any) ([]byte, bool) {
	switch s := v.(type) {
	case []byte:
		return s, true
	case string:
		return []byte(s), true
	}
	return nil, false
}

// AsInt returns an integer value (bools count as 0/1, as in Python).
func AsInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint8:
		return int64(n), true
	case bool:
		if n {
			return 1, true
		}
		return 0, true
	case *big.Int:
		if n.IsInt64() {
			return n.Int64(), true
		}
	}
	return 0, false
}

// AsBool applies Python truthiness to the scalar types xpra uses for flags.
func AsBool(v any) (bool, bool) {
	switch b := v.(type) {
	case bool:
		return b, true
	case nil:
		return false, true
	case string:
		return b != "", true
	case []byte:
		return len(b) != 0, true
	case float32:
		return b != 0, true
	case float64:
		return b != 0, true
	}
	if n, ok := AsInt(v); ok {
		return n != 0, true
	}
	return false, false
}

// AsFloat returns a number as float64.
func AsFloat(v any) (float64, bool) {
	switch f := v.(type) {
	case float64:
		return f, true
	case float32:
		return float64(f), true
	}
	if n, ok := AsInt(v); ok {
		return float64(n), true
	}
	return 0, false
}

// AsStrings returns a list of strings (a list whose items are all text or
// binary strings), as xpra sends for encodings, digests and compressors.
func AsStrings(v any) ([]string, bool) {
	l, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(l))
	for _, it := range l {
		s, ok := AsString(it)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// Equal compares two values structurally. Text and binary strings with the
// same bytes are equal only when loose is set (legacy rencode cannot tell
// them apart).
func Equal(a, b any, loose bool) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case int64, int, int32, uint32, uint8:
		xi, _ := AsInt(x)
		if _, isBool := b.(bool); isBool {
			return false
		}
		yi, ok := AsInt(b)
		if bb, isBig := b.(*big.Int); isBig && !bb.IsInt64() {
			return false
		}
		return ok && xi == yi
	case *big.Int:
		switch y := b.(type) {
		case *big.Int:
			return x.Cmp(y) == 0
		case int64:
			return x.IsInt64() && x.Int64() == y
		}
		return false
	case float32:
		y, ok := b.(float32)
		return ok && (x == y || (x != x && y != y))
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || (x != x && y != y))
	case string:
		if y, ok := b.(string); ok {
			return x == y
		}
		if y, ok := b.([]byte); ok && loose {
			return x == string(y)
		}
		return false
	case []byte:
		if y, ok := b.([]byte); ok {
			return bytes.Equal(x, y)
		}
		if y, ok := b.(string); ok && loose {
			return string(x) == y
		}
		return false
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Equal(x[i], y[i], loose) {
				return false
			}
		}
		return true
	case Dict:
		y, ok := b.(Dict)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Equal(x[i].Key, y[i].Key, loose) || !Equal(x[i].Value, y[i].Value, loose) {
				return false
			}
		}
		return true
	}
	return false
}

// TypeName names a value's type in error messages.
func TypeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, int, int32, uint32, uint8, *big.Int:
		return "int"
	case float32, float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case []any:
		return "list"
	case Dict:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}
