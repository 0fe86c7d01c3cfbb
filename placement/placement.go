// SPDX-License-Identifier: GPL-2.0-or-later

// Package placement routes a front proxy's logins to session hosts (issue
// 16): the host that holds the user's session, per the shared directory,
// else the least-loaded one. A routed login's target is the host as a
// remote xpra target, tcp://USER@ADDR:PORT/, with the per-login token
// (package sessionhost) as the password the user's relay answers the
// host's challenge with. It runs in the root supervisor and sees no
// client bytes: only the authenticated user's name.
package placement

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/xpra-proxy/xpra-proxy/sessionhost"
)

// Host is one session host: its name in the directory (and in its
// tokens: the host's own proxy-name) and where it listens.
type Host struct {
	Name string
	Addr Addr
}

// Addr is where a session host listens. Parsed here, not by xpraurl:
// root links no parser of what clients send (xpraurl brings WebSocket
// and HTTP), and a host's address is only tcp://ADDR:PORT.
type Addr struct {
	Host string // a name, an IPv4 or IPv6 address (without brackets)
	Port int
}

// URL is tcp://USER@ADDR:PORT/ (user "" : none).
func (a Addr) URL(user string) string {
	u := url.URL{Scheme: "tcp", Host: net.JoinHostPort(a.Host, strconv.Itoa(a.Port)), Path: "/"}
	if user != "" {
		u.User = url.User(user)
	}
	return u.String()
}

// parseAddr reads tcp://ADDR:PORT, with an optional trailing slash.
func parseAddr(s string) (Addr, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Addr{}, fmt.Errorf("%q: want tcp://ADDR:PORT, nothing more", s)
	}
	switch scheme {
	case "tcp":
	case "ssh", "ws", "wss", "ssl", "tls", "vsock", "socket", "unix-domain", "named-pipe", "quic":
		return Addr{}, fmt.Errorf("%q: want tcp://ADDR:PORT, nothing more", s)
	default:
		return Addr{}, fmt.Errorf("%q: unknown scheme %q", s, scheme)
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(rest, "@/?#") {
		return Addr{}, fmt.Errorf("%q: want tcp://ADDR:PORT, nothing more", s)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || host == "" {
		return Addr{}, fmt.Errorf("%q: want tcp://ADDR:PORT, nothing more", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return Addr{}, fmt.Errorf("%q: port %q: want 1 to 65535", s, port)
	}
	return Addr{Host: host, Port: n}, nil
}

// ParseHosts reads session-hosts entries, "NAME=tcp://ADDR:PORT".
func ParseHosts(entries []string) ([]Host, error) {
	var hosts []Host
	seen := map[string]bool{}
	for _, e := range entries {
		name, addr, ok := strings.Cut(strings.TrimSpace(e), "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("session host %q: want NAME=tcp://ADDR:PORT", e)
		}
		if seen[name] {
			return nil, fmt.Errorf("session host %q: the name is given twice", name)
		}
		seen[name] = true
		a, err := parseAddr(strings.TrimSpace(addr))
		if err != nil {
			return nil, fmt.Errorf("session host %s: %w", name, err)
		}
		hosts = append(hosts, Host{Name: name, Addr: a})
	}
	return hosts, nil
}

// Directory is the shared session directory (pgdir.DB).
type Directory interface {
	Place(ctx context.Context, user string, hosts []string) (host string, found bool, err error)
}

// Router places logins on session hosts.
type Router struct {
	hosts []Host
	names []string
	key   []byte
	dir   Directory // nil: no shared directory
	log   *slog.Logger
	now   func() time.Time
}

// New makes a router over hosts (in the admin's order: ties go to the
// first) with the key they share; dir may be nil.
func New(hosts []Host, key []byte, dir Directory, log *slog.Logger) (*Router, error) {
	if len(hosts) == 0 {
		return nil, errors.New("placement: no session hosts")
	}
	if err := sessionhost.CheckKey(key); err != nil {
		return nil, fmt.Errorf("placement: %w", err)
	}
	r := &Router{hosts: hosts, key: key, dir: dir, log: log, now: time.Now}
	for _, h := range hosts {
		r.names = append(r.names, h.Name)
	}
	return r, nil
}

// Route is where one login goes.
type Route struct {
	Host Host
	// Display is the relay's target: tcp://USER@ADDR:PORT/.
	Display string
	// Password is the token the relay answers the host's challenge with.
	Password string
	// How it was chosen: "found" (the directory's session or placement),
	// "placed" (least loaded, recorded) or "hashed" (no directory).
	How string
}

// Route chooses user's session host. Without a directory, or while it
// is down, the host is a hash of the user's name: the same user reaches
// the same host from every front, which is where the directory would
// have sent them unless the hosts list changed or they were placed by
// load. It never fails: a directory error is logged and hashed around.
func (r *Router) Route(ctx context.Context, user string) Route {
	h, how := r.choose(ctx, user)
	return Route{Host: h, Display: h.Addr.URL(user), How: how,
		Password: sessionhost.Token(r.key, h.Name, user, sessionhost.Minute(r.now()))}
}

func (r *Router) choose(ctx context.Context, user string) (Host, string) {
	if r.dir != nil {
		name, found, err := r.dir.Place(ctx, user, r.names)
		if err == nil {
			for _, h := range r.hosts {
				if h.Name == name {
					if found {
						return h, "found"
					}
					return h, "placed"
				}
			}
			err = fmt.Errorf("the directory chose %q, not a configured session host", name)
		}
		r.log.Warn("session directory: placing by the user's name", "user", user, "err", err)
	}
	return r.hosts[hashIndex(user, len(r.hosts))], "hashed"
}

// hashIndex is FNV-1a of user modulo n.
func hashIndex(user string, n int) int {
	f := fnv.New32a()
	f.Write([]byte(user))
	return int(f.Sum32() % uint32(n))
}
