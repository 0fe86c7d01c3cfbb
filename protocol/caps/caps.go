// SPDX-License-Identifier: GPL-2.0-or-later

// Package caps reads and writes hello capabilities in both of xpra's forms:
// 3.1's flat dotted keys ("cipher.iv", "lz4": true) and 6.x's nested dicts
// ("encryption": {"iv": ...}, "lz4": {"": true}) — PROTOCOL.md §5.1, pitfall 12.
package caps

import (
	"slices"
	"strings"

	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// Form is how capabilities are laid out.
type Form int

const (
	// Flat is 3.1's layout: nested values flattened to dotted keys.
	Flat Form = iota
	// Nested is 6.x's layout: dicts within dicts.
	Nested
)

// Caps is a read view of a capabilities dict in either form.
type Caps struct {
	d value.Dict
}

// New wraps a decoded hello dict.
func New(d value.Dict) Caps { return Caps{d: d} }

// Dict returns the underlying dict.
func (c Caps) Dict() value.Dict { return c.d }

// Lookup finds key as a flat key, or by walking nested dicts along its dots
// ("a.b.c" may be stored as "a.b.c", as "a" → "b.c" or as "a" → "b" → "c").
func (c Caps) Lookup(key string) (any, bool) {
	if v, ok := c.d.Get(key); ok {
		return v, true
	}
	for i := 0; i < len(key); i++ {
		if key[i] != '.' {
			continue
		}
		if sub, ok := c.d.Get(key[:i]); ok {
			if sd, ok := sub.(value.Dict); ok {
				if v, ok := New(sd).Lookup(key[i+1:]); ok {
					return v, true
				}
			}
		}
	}
	return nil, false
}

// scalar looks key up and unwraps 6.x's {"": value} form.
func (c Caps) scalar(key string) (any, bool) {
	v, ok := c.Lookup(key)
	if d, isDict := v.(value.Dict); ok && isDict {
		return d.Get("")
	}
	return v, ok
}

// Has reports whether key is present in either form.
func (c Caps) Has(key string) bool {
	_, ok := c.Lookup(key)
	return ok
}

// Str returns a text value (text or binary on the wire), or def.
func (c Caps) Str(key, def string) string {
	if v, ok := c.scalar(key); ok {
		if s, ok := value.AsString(v); ok {
			return s
		}
	}
	return def
}

// Bytes returns a binary value (salts, responses), or nil.
func (c Caps) Bytes(key string) []byte {
	if v, ok := c.scalar(key); ok {
		if b, ok := value.AsBytes(v); ok {
			return b
		}
	}
	return nil
}

// Bool returns a flag with Python truthiness, or def.
func (c Caps) Bool(key string, def bool) bool {
	if v, ok := c.scalar(key); ok {
		if b, ok := value.AsBool(v); ok {
			return b
		}
	}
	return def
}

// Int returns an integer value, or def.
func (c Caps) Int(key string, def int64) int64 {
	if v, ok := c.scalar(key); ok {
		if n, ok := value.AsInt(v); ok {
			return n
		}
	}
	return def
}

// Strings returns a list of strings, or nil.
func (c Caps) Strings(key string) []string {
	if v, ok := c.scalar(key); ok {
		if l, ok := value.AsStrings(v); ok {
			return l
		}
	}
	return nil
}

// Sub returns the capabilities below key: its nested dict, or the flat keys
// that start with "key." (with that prefix removed), so one caller serves
// both forms.
func (c Caps) Sub(key string) Caps {
	if v, ok := c.Lookup(key); ok {
		if d, ok := v.(value.Dict); ok {
			return New(d)
		}
	}
	prefix := key + "."
	var out value.Dict
	for _, it := range c.d {
		if k, ok := value.AsString(it.Key); ok && strings.HasPrefix(k, prefix) {
			out = append(out, value.Item{Key: k[len(prefix):], Value: it.Value})
		}
	}
	return New(out)
}

// Set stores v under a dotted key in d, in the given form. In the nested form
// intermediate dicts are created; a scalar already stored where a dict is
// needed moves under "" as 6.x does ("lz4": true → "lz4": {"": true}).
func Set(d *value.Dict, form Form, key string, v any) {
	if form == Flat {
		d.Set(key, v)
		return
	}
	head, rest, nested := strings.Cut(key, ".")
	if !nested {
		if old, ok := d.Get(head); ok {
			if od, isDict := old.(value.Dict); isDict {
				if _, isDictToo := v.(value.Dict); !isDictToo {
					od.Set("", v)
					d.Set(head, od)
					return
				}
			}
		}
		d.Set(head, v)
		return
	}
	var sub value.Dict
	if old, ok := d.Get(head); ok {
		if od, isDict := old.(value.Dict); isDict {
			sub = od
		} else {
			sub = value.Dict{{Key: "", Value: old}}
		}
	}
	Set(&sub, Nested, rest, v)
	d.Set(head, sub)
}

// Flatten converts nested capabilities to 3.1's flat form: {"a": {"b": 1}}
// becomes "a.b": 1 and {"a": {"": v}} becomes "a": v. Dicts that are values
// in 3.1 too (such as "aliases") are named in keep and stay whole.
func Flatten(d value.Dict, keep ...string) value.Dict {
	out := make(value.Dict, 0, len(d))
	var walk func(prefix string, d value.Dict)
	walk = func(prefix string, d value.Dict) {
		for _, it := range d {
			k, ok := value.AsString(it.Key)
			if !ok {
				out = append(out, it) // non-string keys cannot be dotted; keep as they are
				continue
			}
			full := k
			switch {
			case prefix != "" && k == "":
				full = prefix
			case prefix != "":
				full = prefix + "." + k
			}
			if sub, ok := it.Value.(value.Dict); ok && len(sub) > 0 && allStringKeys(sub) && !slices.Contains(keep, full) {
				walk(full, sub)
				continue
			}
			out = append(out, value.Item{Key: full, Value: it.Value})
		}
	}
	walk("", d)
	return out
}

// Nest converts flat dotted capabilities to 6.x's nested form.
func Nest(d value.Dict) value.Dict {
	var out value.Dict
	for _, it := range d {
		k, ok := value.AsString(it.Key)
		if !ok {
			out = append(out, it)
			continue
		}
		Set(&out, Nested, k, it.Value)
	}
	return out
}

func allStringKeys(d value.Dict) bool {
	for _, it := range d {
		if _, ok := value.AsString(it.Key); !ok {
			return false
		}
	}
	return true
}
