// SPDX-License-Identifier: GPL-2.0-or-later

package caps

import (
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"strconv"
	"strings"
)

// legacyRequests are 3.1's boolean request flags, in the order 3.1's server
// tests them, with the request each one stands for.
var legacyRequests = []struct{ key, request string }{
	{"version_request", "version"},
	{"info_request", "info"},
	{"stop_request", "stop"},
	{"exit_request", "exit"},
	{"detach_request", "detach"},
	{"screenshot_request", "screenshot"},
	{"print_request", "print"},
	{"event_request", "event"},
	{"connect_test_request", "connect_test"},
	{"command_request", "command"},
}

// Hello is the typed view of the hello keys a proxy acts on. Everything else
// stays in Caps and is relayed as it came.
type Hello struct {
	Caps

	Version  string
	Username string
	UUID     string
	Display  string // "" when the client named none
	Request  string // "info", "version", ... or "" for a UI connection

	Encoders         []string // packet encoders the peer can decode
	Compressors      []string
	CompressionLevel int64

	Digests     []string
	SaltDigests []string

	Challenge           bool   // the client has a password and wants a challenge
	ChallengeResponse   []byte // only in the second hello
	ChallengeClientSalt []byte

	InfoNamespace bool
	Connect       bool // false: the client only tests the connection (proxy)
}

// ParseHello reads the typed fields of a hello dict in either form.
func ParseHello(d value.Dict) Hello {
	c := New(d)
	h := Hello{
		Caps:                c,
		Version:             c.Str("version", ""),
		Username:            c.Str("username", ""),
		UUID:                c.Str("uuid", ""),
		Display:             c.Str("display", ""),
		Request:             c.Str("request", ""),
		Encoders:            encoders(c),
		Compressors:         compressors(c),
		CompressionLevel:    c.Int("compression_level", 1),
		Digests:             c.Strings("digest"),
		SaltDigests:         c.Strings("salt-digest"),
		Challenge:           c.Bool("challenge", false),
		ChallengeResponse:   c.Bytes("challenge_response"),
		ChallengeClientSalt: c.Bytes("challenge_client_salt"),
		InfoNamespace:       c.Bool("info-namespace", false),
		Connect:             c.Bool("connect", true),
	}
	if h.Display == "" {
		h.Display = c.Str("session.display", "")
	}
	if h.Request == "" {
		for _, lr := range legacyRequests {
			if c.Bool(lr.key, false) {
				h.Request = lr.request
				break
			}
		}
	}
	return h
}

// encoders lists the packet encoders a peer announced: the "encoders" list
// (6.x) and the boolean caps of each name (3.1; bencode is assumed when
// absent, as 3.1 does).
func encoders(c Caps) []string {
	var out []string
	add := func(name string) {
		for _, e := range out {
			if e == name {
				return
			}
		}
		out = append(out, name)
	}
	for _, e := range c.Strings("encoders") {
		add(e)
	}
	for _, name := range []string{"rencodeplus", "rencode", "bencode", "yaml"} {
		if c.Bool(name, name == "bencode" && !c.Has("encoders")) {
			add(name)
		}
	}
	return out
}

// compressors lists the compressors a peer announced, by list and by flag.
func compressors(c Caps) []string {
	out := c.Strings("compressors")
	for _, name := range []string{"lz4", "lzo", "zlib", "brotli"} {
		if c.Bool(name, false) && !contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// Supports reports whether a list holds name.
func contains(list []string, name string) bool {
	for _, s := range list {
		if s == name {
			return true
		}
	}
	return false
}

// HasEncoder reports whether the peer can decode the named packet encoder.
func (h Hello) HasEncoder(name string) bool { return contains(h.Encoders, name) }

// HasCompressor reports whether the peer can decompress the named algorithm.
func (h Hello) HasCompressor(name string) bool { return contains(h.Compressors, name) }

// Form is the caps layout of the peer that sent the hello: 3.1 flattens,
// 6.x nests (and so do 5.x's encryption caps); by version, because a 3.1
// hello also holds a dict (its aliases).
func (h Hello) Form() Form {
	major, _, _ := strings.Cut(h.Version, ".")
	if n, err := strconv.Atoi(major); err == nil && n >= 5 {
		return Nested
	}
	return Flat
}
