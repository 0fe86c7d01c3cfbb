// SPDX-License-Identifier: GPL-2.0-or-later

// Package xpraurl parses xpra connection strings ("tcp://user:pass@host:port/display"
// and friends) following either xpra 3.1 or xpra 6.x rules (PROTOCOL.md §8).
//
// The input is treated as untrusted: it may come from configuration files or
// from clients, so the parser is strict, bounded and never echoes passwords
// in its error messages.
package xpraurl

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Dialect selects which xpra version's parsing rules apply.
type Dialect int

const (
	V3 Dialect = iota // xpra 3.1 rules
	V6                // xpra 6.x rules
)

func (d Dialect) String() string {
	switch d {
	case V3:
		return "V3"
	case V6:
		return "V6"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// Limits on untrusted input.
const (
	MaxInputLen   = 4096
	MaxDisplayLen = 256
	MaxOptions    = 64
	maxHostLen    = 255
)

// Target is a parsed connection string.
type Target struct {
	Scheme             string // canonical: "tcp", "ssl", "ws", "wss", "socket", "vsock", "ssh"; "" for a local display
	Username, Password string
	HasPassword        bool              // a password was given (possibly empty "user:@host")
	Host               string            // without brackets for IPv6
	Port               int               // network schemes and vsock
	SocketPath         string            // for "socket"
	CID                uint32            // vsock
	Display            string            // V3: ":10"; V6: "10"; "" if none
	Options            map[string]string // query parameters (?a=b&c=d), nil if none
}

// schemes maps every accepted scheme token to its canonical name; v6only
// marks the aliases that xpra 3.1 does not know.
var schemes = map[string]struct {
	canonical string
	v6only    bool
}{
	"tcp":      {"tcp", false},
	"ssl":      {"ssl", false},
	"ws":       {"ws", false},
	"wss":      {"wss", false},
	"socket":   {"socket", false},
	"vsock":    {"vsock", false},
	"ssh":      {"ssh", false},
	"xpra":     {"tcp", true},
	"xpra+tcp": {"tcp", true},
	"xpras":    {"ssl", true},
	"xpra+tls": {"ssl", true},
	"xpra+ssl": {"ssl", true},
	"xpra+ws":  {"ws", true},
	"xpra+wss": {"wss", true},
	"xpra+ssh": {"ssh", true},
}

// legacySchemes are the schemes that 3.1 accepted as "tcp/..." and both
// versions accept as "tcp:host:port".
var legacySchemes = map[string]bool{"tcp": true, "ssl": true, "ws": true, "wss": true}

// defaultPort returns the port used when the string gives none; 0 means a
// port is required.
func defaultPort(scheme string, d Dialect) int {
	switch scheme {
	case "tcp":
		return 14500
	case "ssl", "wss":
		if d == V6 {
			return 443
		}
		return 14500
	case "ws":
		if d == V6 {
			return 80
		}
		return 14500
	case "ssh":
		return 22
	}
	return 0
}

// Parse parses a connection string under the rules of dialect d.
func Parse(s string, d Dialect) (Target, error) {
	t, err := parse(s, d)
	if err != nil {
		return Target{}, err
	}
	// Percent-encoding and default ports can make the canonical form longer
	// than the input; refusing those keeps Parse(t.URL(), d) == t true.
	if n := len(t.URL()); n > MaxInputLen {
		return Target{}, fmt.Errorf("xpraurl: connection string too long once normalised: %d bytes, limit %d", n, MaxInputLen)
	}
	return t, nil
}

func parse(s string, d Dialect) (Target, error) {
	if d != V3 && d != V6 {
		return Target{}, fmt.Errorf("xpraurl: unknown dialect %d", int(d))
	}
	if len(s) > MaxInputLen {
		return Target{}, fmt.Errorf("xpraurl: connection string too long: %d bytes, limit %d", len(s), MaxInputLen)
	}
	if s == "" {
		return Target{}, errors.New("xpraurl: empty connection string")
	}
	if err := checkText(s); err != nil {
		return Target{}, fmt.Errorf("xpraurl: connection string: %w", err)
	}

	// A bare absolute path is a unix socket, parsed exactly like socket://
	// so that URL() of the result round-trips.
	if s[0] == '/' {
		return parseSocket(s)
	}
	if disp, ok := localDisplay(s, d); ok {
		if len(disp) > MaxDisplayLen {
			return Target{}, fmt.Errorf("xpraurl: display longer than %d bytes", MaxDisplayLen)
		}
		return Target{Display: disp}, nil
	}

	if i := strings.Index(s, "://"); i >= 0 && isSchemeToken(s[:i]) {
		name := strings.ToLower(s[:i])
		sc, ok := schemes[name]
		if !ok || (sc.v6only && d == V3) {
			if len(name) > 32 {
				name = name[:32] + "..." // bounded: error messages end up in logs
			}
			return Target{}, fmt.Errorf("xpraurl: unknown scheme %q for %v rules", name, d)
		}
		return parseRest(sc.canonical, s[i+3:], d)
	}
	// Legacy forms. The prefix checks are disjoint: "tcp/..." has no ':'
	// before its '/', "tcp:..." has no '/' before its ':'.
	if i := strings.IndexByte(s, '/'); i > 0 && legacySchemes[strings.ToLower(s[:i])] {
		if d != V3 {
			return Target{}, fmt.Errorf("xpraurl: legacy %q/ form is not accepted under V6 rules, use %s://",
				strings.ToLower(s[:i]), strings.ToLower(s[:i]))
		}
		return parseRest(strings.ToLower(s[:i]), s[i+1:], d)
	}
	if i := strings.IndexByte(s, ':'); i > 0 && legacySchemes[strings.ToLower(s[:i])] {
		// 6.x warns about this form but still accepts it.
		return parseRest(strings.ToLower(s[:i]), s[i+1:], d)
	}
	if i := strings.IndexByte(s, ':'); i > 0 && isSchemeToken(s[:i]) && len(s[:i]) <= 32 {
		// Naming what stands before the first ':' helps and cannot leak a
		// password, which always follows a ':'.
		name := strings.ToLower(s[:i])
		if _, ok := schemes[name]; ok {
			return Target{}, fmt.Errorf("xpraurl: %s needs the %s:// form", name, name)
		}
		return Target{}, fmt.Errorf("xpraurl: unknown scheme %q", name)
	}
	return Target{}, errors.New("xpraurl: unrecognised connection string: expected scheme://..., an absolute socket path or a display number")
}

// parseRest parses what follows the scheme separator.
func parseRest(scheme, rest string, d Dialect) (Target, error) {
	if scheme == "socket" {
		return parseSocket(rest)
	}
	t := Target{Scheme: scheme}
	rest, query, _ := strings.Cut(rest, "?")
	opts, err := parseOptions(query)
	if err != nil {
		return Target{}, err
	}
	t.Options = opts

	// The LAST '@' separates the credentials: passwords may contain '@'.
	hostpart := rest
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		if err := t.setUserinfo(rest[:i]); err != nil {
			return Target{}, err
		}
		hostpart = rest[i+1:]
	}
	hostport, disp, hasDisp := strings.Cut(hostpart, "/")
	if hasDisp {
		if t.Display, err = parseDisplay(disp, d); err != nil {
			return Target{}, err
		}
	}

	host, port, err := splitHostPort(hostport)
	if err != nil {
		return Target{}, fmt.Errorf("xpraurl: %s address: %w", scheme, err)
	}
	if scheme == "vsock" {
		if host == "" || !allDigits(host) {
			return Target{}, fmt.Errorf("xpraurl: vsock CID must be a number, got %q", host)
		}
		cid, err := strconv.ParseUint(host, 10, 32)
		if err != nil {
			return Target{}, fmt.Errorf("xpraurl: vsock CID %q: %w", host, err)
		}
		if port == "" {
			return Target{}, errors.New("xpraurl: vsock needs a port (vsock://CID:PORT)")
		}
		t.CID = uint32(cid)
	} else {
		if host == "" {
			return Target{}, fmt.Errorf("xpraurl: %s needs a host", scheme)
		}
		t.Host = host
	}
	if port == "" {
		t.Port = defaultPort(scheme, d)
	} else if t.Port, err = parsePort(port); err != nil {
		return Target{}, err
	}
	return t, nil
}

// parseSocket parses "[user[:pass]@]/path[?query]".
func parseSocket(rest string) (Target, error) {
	t := Target{Scheme: "socket"}
	rest, query, _ := strings.Cut(rest, "?")
	opts, err := parseOptions(query)
	if err != nil {
		return Target{}, err
	}
	t.Options = opts
	path := rest
	if !strings.HasPrefix(rest, "/") {
		// Credentials end at the first "@/": a path may contain '@' too, and
		// URL() escapes both characters in credentials, so this round-trips.
		i := strings.Index(rest, "@/")
		if i < 0 {
			return Target{}, errors.New("xpraurl: socket path must be absolute (socket:///path or socket://user@/path)")
		}
		if err := t.setUserinfo(rest[:i]); err != nil {
			return Target{}, err
		}
		path = rest[i+1:]
	}
	if len(path) < 2 {
		return Target{}, errors.New("xpraurl: empty socket path")
	}
	t.SocketPath = path
	return t, nil
}

// setUserinfo splits "user[:password]" at the first ':' and percent-decodes
// both parts.
func (t *Target) setUserinfo(ui string) error {
	user, pass, hasPass := strings.Cut(ui, ":")
	// A raw '/' in the user name means the '@' was really part of the
	// display or path ("tcp://host/a@b"); refuse rather than mis-parse.
	if strings.Contains(user, "/") {
		return errors.New("xpraurl: '/' in user name (percent-encode it, or '@' was not meant as a separator)")
	}
	u, err := url.PathUnescape(user)
	if err != nil {
		return fmt.Errorf("xpraurl: user name: %w", err)
	}
	if err := checkText(u); err != nil {
		return fmt.Errorf("xpraurl: user name: %w", err)
	}
	t.Username = u
	if hasPass {
		p, err := url.PathUnescape(pass)
		if err != nil {
			// Not %w: url.EscapeError quotes the offending text of the password.
			return errors.New("xpraurl: password: invalid percent-encoding")
		}
		if checkText(p) != nil {
			return errors.New("xpraurl: password: contains control characters or invalid UTF-8")
		}
		t.Password, t.HasPassword = p, true
	}
	return nil
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port".
func splitHostPort(hp string) (host, port string, err error) {
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", "", errors.New("missing ']' after IPv6 address")
		}
		host = hp[1:end]
		addr, perr := netip.ParseAddr(host)
		if perr != nil || !addr.Is6() {
			return "", "", fmt.Errorf("%q in brackets is not an IPv6 address", host)
		}
		after := hp[end+1:]
		if after == "" {
			return host, "", nil
		}
		if after[0] != ':' {
			return "", "", fmt.Errorf("unexpected %q after IPv6 address", after)
		}
		if after[1:] == "" {
			return "", "", errors.New("empty port")
		}
		return host, after[1:], nil
	}
	switch strings.Count(hp, ":") {
	case 0:
		host = hp
	case 1:
		host, port, _ = strings.Cut(hp, ":")
		if port == "" {
			return "", "", errors.New("empty port")
		}
	default:
		// Not quoted: without an '@' this part may hold a mistyped password.
		return "", "", errors.New("ambiguous address with several ':': put IPv6 addresses in brackets, e.g. [::1]:14500")
	}
	if len(host) > maxHostLen {
		return "", "", fmt.Errorf("host name longer than %d bytes", maxHostLen)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", "", fmt.Errorf("invalid character %q in host name", c)
		}
	}
	return host, port, nil
}

func parsePort(p string) (int, error) {
	if !allDigits(p) || len(p) > 5 {
		return 0, errors.New("xpraurl: invalid port: want 1-65535")
	}
	n, _ := strconv.Atoi(p) // cannot fail: at most 5 digits
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("xpraurl: invalid port %d: want 1-65535", n)
	}
	return n, nil
}

// localDisplay recognises ":10", "10" and ":10.0" (screen dropped).
func localDisplay(s string, d Dialect) (string, bool) {
	n, ok := numericDisplay(strings.TrimPrefix(s, ":"))
	if !ok {
		return "", false
	}
	if d == V3 {
		return ":" + n, true
	}
	return n, true
}

// numericDisplay reports whether s is "N" or "N.S" and returns N.
func numericDisplay(s string) (string, bool) {
	n, screen, hasScreen := strings.Cut(s, ".")
	if !allDigits(n) || (hasScreen && !allDigits(screen)) {
		return "", false
	}
	return n, true
}

// parseDisplay normalises the part after the host's '/'. Proxies accept any
// display string, so non-numeric ones are kept.
func parseDisplay(s string, d Dialect) (string, error) {
	if s == "" {
		return "", nil
	}
	if strings.Contains(s, "/") {
		return "", errors.New("xpraurl: display must not contain '/'")
	}
	var disp string
	if n, ok := numericDisplay(strings.TrimPrefix(s, ":")); ok {
		disp = n
		if d == V3 {
			disp = ":" + n
		}
	} else {
		disp = s
		if d == V3 && !strings.HasPrefix(s, ":") {
			disp = ":" + s
		}
	}
	// Checked after normalisation so that URL() output always re-parses.
	if len(disp) > MaxDisplayLen {
		return "", fmt.Errorf("xpraurl: display longer than %d bytes", MaxDisplayLen)
	}
	return disp, nil
}

func parseOptions(q string) (map[string]string, error) {
	n := 0
	for _, kv := range strings.Split(q, "&") {
		if kv != "" {
			n++
		}
	}
	// Counted before parsing so a huge query costs nothing.
	if n > MaxOptions {
		return nil, fmt.Errorf("xpraurl: too many options: %d, limit %d", n, MaxOptions)
	}
	if n == 0 {
		return nil, nil
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return nil, fmt.Errorf("xpraurl: options: %w", err)
	}
	opts := make(map[string]string, len(vals))
	for k, v := range vals {
		if k == "" {
			return nil, errors.New("xpraurl: options: empty option name")
		}
		if err := checkText(k); err != nil {
			return nil, fmt.Errorf("xpraurl: option name: %w", err)
		}
		last := v[len(v)-1] // duplicate keys: last wins
		if err := checkText(last); err != nil {
			return nil, fmt.Errorf("xpraurl: option %q: %w", k, err)
		}
		opts[k] = last
	}
	return opts, nil
}

// checkText rejects invalid UTF-8 and control characters, which have no
// business in a connection string and are dangerous in logs.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("invalid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U at byte %d", r, i)
		}
	}
	return nil
}

func isSchemeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Address is what to dial: "host:port" for network schemes, "CID:PORT" for
// vsock, the path for a socket, "" for a local display.
func (t Target) Address() string {
	switch t.Scheme {
	case "":
		return ""
	case "socket":
		return t.SocketPath
	case "vsock":
		return strconv.FormatUint(uint64(t.CID), 10) + ":" + strconv.Itoa(t.Port)
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// String is the canonical URL with secrets masked, safe for logs.
func (t Target) String() string { return t.format(true) }

// URL is the canonical URL with the real password, for handing to peers.
// Parse(t.URL(), d) returns t under the dialect t was parsed with.
func (t Target) URL() string { return t.format(false) }

// secretOption reports option names whose values String() masks.
func secretOption(k string) bool {
	k = strings.ToLower(k)
	for _, w := range []string{"password", "passwd", "secret", "token", "keydata"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

func (t Target) format(mask bool) string {
	if t.Scheme == "" {
		return t.Display
	}
	var b strings.Builder
	b.WriteString(t.Scheme)
	b.WriteString("://")
	if t.Username != "" || t.HasPassword {
		b.WriteString(escape(t.Username))
		if t.HasPassword {
			b.WriteByte(':')
			if mask {
				b.WriteString("***")
			} else {
				b.WriteString(escape(t.Password))
			}
		}
		b.WriteByte('@')
	}
	switch t.Scheme {
	case "socket":
		b.WriteString(t.SocketPath)
	default:
		if t.Scheme == "vsock" {
			b.WriteString(strconv.FormatUint(uint64(t.CID), 10))
		} else if strings.Contains(t.Host, ":") {
			b.WriteString("[" + t.Host + "]")
		} else {
			b.WriteString(t.Host)
		}
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(t.Port))
		b.WriteByte('/')
		b.WriteString(formatDisplay(t.Display))
	}
	if len(t.Options) > 0 {
		keys := make([]string, 0, len(t.Options))
		for k := range t.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('?')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte('&')
			}
			v := t.Options[k]
			if mask && secretOption(k) {
				v = "***"
			}
			b.WriteString(url.QueryEscape(k))
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(v))
		}
	}
	return b.String()
}

// formatDisplay writes a V3 ":10" as "/10" (the usual spelling, and V3
// re-adds the ':'); anything else is written as stored.
func formatDisplay(disp string) string {
	if n, ok := strings.CutPrefix(disp, ":"); ok && allDigits(n) {
		return n
	}
	return disp
}

// escape percent-encodes everything but unreserved characters, so that
// ':', '@', '/', '?' and '%' in credentials survive a re-parse.
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
