// SPDX-License-Identifier: GPL-2.0-or-later

package caps_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/tracehello"
	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// FuzzParseHello reads a client's hello dict as the pre-auth process, the
// control process and the relay do: decoded from rencode (3.1's legacy
// dialect, or 6.x's rencodeplus when the first byte is odd) under a
// pre-auth budget, then every typed field. Nothing may panic, reading
// the fields must not allocate more than a fraction of the input, and a
// flat (3.1) hello must read the same once nested as 6.x lays it out.
// Seeds: the captures' hellos.
func FuzzParseHello(f *testing.F) {
	for _, h := range tracehello.Hellos(f) {
		for _, d := range []rencode.Dialect{rencode.Legacy, rencode.Plus} {
			b, err := rencode.Encode(h, d)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(byte(d), b)
		}
	}
	f.Fuzz(func(t *testing.T, dialect byte, in []byte) {
		d := rencode.Legacy
		if dialect&1 == 1 {
			d = rencode.Plus
		}
		v, err := rencode.DecodeWithin(in, d, budget.New(budget.ForPacket(64<<10)))
		if err != nil {
			return
		}
		dict, ok := v.(value.Dict)
		if !ok {
			return
		}
		// The dict is decoded: ParseHello itself copies nothing big
		// (lists of names at most).
		fuzzcheck.Bounded(t, 64<<10+uint64(len(in))*4, func() {
			h := caps.ParseHello(dict)
			_ = h.Form()
			c := caps.New(dict)
			_ = c.Sub("encryption").Str("cipher", "")
			_ = c.Sub("cipher").Bytes("iv")
		})
		plain, ok := plainFlat(dict)
		if !ok {
			return
		}
		// The same caps laid out as 6.x does read the same.
		flat, nested := caps.ParseHello(plain), caps.ParseHello(caps.Nest(plain))
		flat.Caps, nested.Caps = caps.Caps{}, caps.Caps{}
		if !reflect.DeepEqual(flat, nested) {
			t.Fatalf("flat and nested forms read differently:\n%#v\n%#v", flat, nested)
		}
	})
}

// plainFlat returns a dict in 3.1's flat form with nothing Nest must
// resolve (dict values such as aliases left out), if d has text keys, each
// once, without an empty segment between dots.
func plainFlat(d value.Dict) (value.Dict, bool) {
	seen := map[string]bool{}
	var out value.Dict
	for _, it := range d {
		k, ok := value.AsString(it.Key)
		if !ok || seen[k] || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") || k == "" {
			return nil, false
		}
		seen[k] = true
		if _, isDict := it.Value.(value.Dict); !isDict {
			out = append(out, it)
		}
	}
	return out, true
}
