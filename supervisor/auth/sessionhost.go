// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xpra-proxy/xpra-proxy/sessionhost"
)

// sessionHost is the login module of a session host (issue 16): only the
// front proxies connect, from the addresses of from=, each login on
// behalf of the user it names, proven by a token derived from the key
// the hosts share (package sessionhost), so the user's relay on the
// front never holds the key itself. It grants the named user's own
// sessions, found or started here.
type sessionHost struct {
	key  []byte
	name string // this host's name, as the fronts' session-hosts call it
	from []netip.Prefix
	now  func() time.Time
}

// newSessionHost: session-host,key-file=PATH,from="CIDR CIDR",name=NAME.
// from= is required (the module admits nobody else); its entries are
// separated by spaces or semicolons, or commas inside quotes. name is
// the proxy's own name (proxy-name, else the host name) by default.
func newSessionHost(spec Spec, cfg Config) (Module, error) {
	for k := range spec.Options {
		switch k {
		case "key_file", "from", "name":
		default:
			return nil, fmt.Errorf("auth: module session-host: unknown option %q (key-file, from, name)", k)
		}
	}
	file := spec.Options["key_file"]
	if file == "" {
		return nil, fmt.Errorf("auth: module session-host needs key-file=PATH (a root-only file with the key the front proxies share)")
	}
	key, err := ReadSecret(file, cfg)
	if err != nil {
		return nil, fmt.Errorf("auth: module session-host: key-file: %w", err)
	}
	if err := sessionhost.CheckKey(key); err != nil {
		return nil, fmt.Errorf("auth: module session-host: key-file %s: %w", file, err)
	}
	m := &sessionHost{key: key, name: spec.Options["name"], now: time.Now}
	if m.name == "" {
		m.name = cfg.ProxyName
	}
	if m.name == "" {
		return nil, fmt.Errorf("auth: module session-host: no name= and no proxy name")
	}
	for _, f := range strings.FieldsFunc(spec.Options["from"], func(r rune) bool { return r == ' ' || r == ';' || r == ',' }) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("auth: module session-host: from %q: neither a CIDR nor an address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		m.from = append(m.from, p.Masked())
	}
	if len(m.from) == 0 {
		return nil, fmt.Errorf("auth: module session-host needs from=CIDR (the front proxies' addresses)")
	}
	return m, nil
}

func (m *sessionHost) Name() string         { return "session-host" }
func (m *sessionHost) NeedsChallenge() bool { return true }

func (m *sessionHost) Authenticate(r Request) (*Session, error) {
	a, err := netip.ParseAddr(r.RemoteHost)
	if err != nil {
		return nil, &Refusal{Log: fmt.Sprintf("not from a front proxy (peer %q is no address)", r.RemoteHost)}
	}
	a = a.Unmap()
	trusted := false
	for _, p := range m.from {
		if p.Contains(a) {
			trusted = true
		}
	}
	if !trusted {
		return nil, &Refusal{Log: fmt.Sprintf("%s is not a front proxy (from=)", a)}
	}
	if r.Verify == nil || r.Username == "" {
		return nil, ErrDenied
	}
	ok := false
	for _, tok := range sessionhost.Accepted(m.key, m.name, r.Username, m.now()) {
		// Every candidate is tried: the time taken does not tell which
		// minute's token was close.
		if r.Verify(tok) {
			ok = true
		}
	}
	if !ok {
		return nil, &Refusal{Log: "not this host's token for this user (key, host name, user or clock differ)"}
	}
	return UserSession(r.Username)
}
