// SPDX-License-Identifier: GPL-2.0-or-later

package packet

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// MaxAliases bounds the alias table a peer may announce; 3.1 uses 56.
const MaxAliases = 1024

// Aliases is a packet-type alias table (3.1 … 6.2): a hello's "aliases" dict
// maps names to the integers its sender accepts in place of the names.
type Aliases struct {
	byID   map[int64]string
	byName map[string]int64
}

// ParseAliases reads the "aliases" value of a hello. A missing value (nil)
// gives an empty table.
func ParseAliases(v any) (Aliases, error) {
	var a Aliases
	if v == nil {
		return a, nil
	}
	d, ok := v.(value.Dict)
	if !ok {
		return a, fmt.Errorf("aliases: want a dict, got %s", value.TypeName(v))
	}
	if len(d) > MaxAliases {
		return a, fmt.Errorf("aliases: %d entries, at most %d allowed", len(d), MaxAliases)
	}
	a.byID = make(map[int64]string, len(d))
	a.byName = make(map[string]int64, len(d))
	for _, it := range d {
		name, ok := value.AsString(it.Key)
		if !ok || name == "" {
			return Aliases{}, fmt.Errorf("aliases: key %s is not a packet name", value.TypeName(it.Key))
		}
		id, ok := it.Value.(int64)
		if !ok || id < 0 || id > math.MaxInt32 {
			return Aliases{}, fmt.Errorf("aliases: %q maps to %v, want a small non-negative integer", name, it.Value)
		}
		a.byID[id] = name
		a.byName[name] = id
	}
	return a, nil
}

// NewAliases builds a table from names numbered from 1, as 3.1 numbers its
// packet types.
func NewAliases(names ...string) Aliases {
	a := Aliases{byID: make(map[int64]string, len(names)), byName: make(map[string]int64, len(names))}
	for i, n := range names {
		a.byID[int64(i+1)] = n
		a.byName[n] = int64(i + 1)
	}
	return a
}

// Len is the number of aliases.
func (a Aliases) Len() int { return len(a.byID) }

// Name returns the packet name of an integer alias.
func (a Aliases) Name(id int64) (string, bool) {
	n, ok := a.byID[id]
	return n, ok
}

// ID returns the integer alias of a packet name.
func (a Aliases) ID(name string) (int64, bool) {
	id, ok := a.byName[name]
	return id, ok
}

// Dict renders the table as a hello's "aliases" value, in numeric order.
func (a Aliases) Dict() value.Dict {
	ids := slices.Sorted(maps.Keys(a.byID))
	d := make(value.Dict, 0, len(ids))
	for _, id := range ids {
		d = append(d, value.Item{Key: a.byID[id], Value: id})
	}
	return d
}

// Type returns a decoded packet's type name. An integer type is looked up in
// announced, the table we sent to the peer in our own hello.
func Type(p []any, announced Aliases) (string, error) {
	if len(p) == 0 {
		return "", fmt.Errorf("empty packet")
	}
	switch t := p[0].(type) {
	case string:
		return t, nil
	case []byte:
		return string(t), nil
	case int64:
		if n, ok := announced.Name(t); ok {
			return n, nil
		}
		return "", fmt.Errorf("unknown packet type alias %d", t)
	}
	return "", fmt.Errorf("invalid packet type: %s", value.TypeName(p[0]))
}
