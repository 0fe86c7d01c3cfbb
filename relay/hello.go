// SPDX-License-Identifier: GPL-2.0-or-later

package relay

import (
	"os"
	"runtime"
	"strings"

	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/version"
)

// clientOnlyPrefixes are the client hello keys that describe the client's
// link to us, not to the server: they are dropped before the hello goes on
// (as the reference does; it also drops "lz0", a typo for "lzo" that we do
// not copy). Compressors and encoders stay: the server then sends what the
// client can decode, so its frames pass through untouched.
var clientOnlyPrefixes = []string{"cipher", "challenge", "digest", "salt-digest", "aliases", "encryption"}

func hasPrefix(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// ServerHelloOptions is what the worker adds to the hello it sends on.
type ServerHelloOptions struct {
	Username         string            // from the target URI, else the client's
	SessionOptions   map[string]string // sanitised: only the whitelist below is applied
	Digests          []string          // what the worker can answer if the server challenges it
	SaltDigests      []string
	UID, GID         int
	Form             caps.Form // the server's caps layout
	ChallengeAnswers value.Dict
	// RawFrames asks a 3.1 server for uncompressed rgb frames, which the
	// relay re-encodes with the shared encoder (reencode.go).
	RawFrames bool
	// ProxyVideo are flat keys asking a 4.3-6.3 server for proxy frames
	// (ProxyVideoCaps, reencode_proxy.go), flat whatever the form.
	ProxyVideo value.Dict
}

// sessionOptionTypes whitelists the session options a database may set on
// the forwarded hello (reference 3.1.3: compression_level int; lz4, lzo,
// zlib, rencode, bencode, yaml bools).
var sessionOptionTypes = map[string]string{
	"compression_level": "int", "compression": "int",
	"lz4": "bool", "zlib": "bool", "rencode": "bool", "bencode": "bool", "brotli": "bool",
}

// ServerHello builds the hello the worker sends to the real server from the
// client's.
func ServerHello(client value.Dict, o ServerHelloOptions) value.Dict {
	out := make(value.Dict, 0, len(client)+16)
	for _, it := range client {
		k, ok := value.AsString(it.Key)
		if ok && hasPrefix(k, clientOnlyPrefixes) {
			continue
		}
		out = append(out, it)
	}
	set := func(k string, v any) { caps.Set(&out, o.Form, k, v) }
	if o.Username != "" {
		set("username", o.Username)
	}
	set("digest", anyStrings(o.Digests))
	set("salt-digest", anyStrings(o.SaltDigests))
	for k, v := range o.SessionOptions {
		typ, ok := sessionOptionTypes[k]
		if !ok {
			continue
		}
		if k == "compression" {
			k = "compression_level"
		}
		switch typ {
		case "int":
			if n, ok := atoi(v); ok {
				set(k, int64(n))
			}
		case "bool":
			set(k, v == "1" || strings.EqualFold(v, "true") || strings.EqualFold(v, "yes"))
		}
	}
	for _, it := range proxyIdentity(o.UID, o.GID) {
		set(it.Key.(string), it.Value)
	}
	if o.RawFrames {
		for _, it := range rawFramesCaps {
			set(it.Key.(string), it.Value)
		}
	}
	for _, it := range o.ProxyVideo {
		out.Set(it.Key.(string), it.Value)
	}
	out = append(out, o.ChallengeAnswers...)
	return out
}

// rawFramesCaps make a 3.1 server send every window update as plain rgb,
// uncompressed (a local hop: compressing is the proxy's job), with no
// scrolling or deltas, so each draw is pixels the proxy can put in its
// copy of the window. The client's own caps (what it decodes) stay for
// everything else. Not "encoding.proxy.video": 3.1.3 on Python 3 cannot
// parse it (reencode.go).
var rawFramesCaps = value.Dict{
	{Key: "encoding", Value: "rgb"},
	{Key: "encodings", Value: []any{"rgb"}},
	{Key: "encodings.core", Value: []any{"rgb24", "rgb32"}},
	{Key: "encoding.rgb_lz4", Value: false},
	{Key: "encoding.rgb_zlib", Value: false},
	{Key: "encoding.rgb_lzo", Value: false},
	{Key: "encoding.scrolling", Value: false},
	{Key: "encoding.supports_delta", Value: []any{}},
}

// ClientHello builds the hello the worker sends to the client from the
// server's: aliases go (we read and write packet names only), the proxy's
// identity is added.
func ClientHello(server value.Dict, form caps.Form, uid, gid int) value.Dict {
	out := make(value.Dict, 0, len(server)+8)
	for _, it := range server {
		k, ok := value.AsString(it.Key)
		if ok && hasPrefix(k, []string{"aliases", "cipher", "encryption"}) {
			continue
		}
		out = append(out, it)
	}
	for _, it := range proxyIdentity(uid, gid) {
		caps.Set(&out, form, it.Key.(string), it.Value)
	}
	return out
}

// proxyIdentity is the proxy.* block the reference adds to both hellos.
func proxyIdentity(uid, gid int) value.Dict {
	host, _ := os.Hostname()
	return value.Dict{
		{Key: "proxy", Value: true},
		{Key: "proxy.version", Value: version.Proxy},
		{Key: "proxy.hostname", Value: host},
		{Key: "proxy.platform", Value: runtime.GOOS},
		{Key: "proxy.pid", Value: int64(os.Getpid())},
		{Key: "proxy.uid", Value: int64(uid)},
		{Key: "proxy.gid", Value: int64(gid)},
		{Key: "proxy.type", Value: "xpra-proxy (Go)"},
	}
}

func anyStrings(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func atoi(s string) (int, bool) {
	n := 0
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
