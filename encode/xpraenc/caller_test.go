// SPDX-License-Identifier: GPL-2.0-or-later

package xpraenc

import (
	"log/slog"
	"net"
	"os"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/encode/internal/servetest"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/xpracaller"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

var quiet = slog.New(slog.DiscardHandler)

type fixture struct {
	srv  *Server
	pool *pool.Pool
	path string
}

func start(t testing.TB, cfg Config, pcfg pool.Config) *fixture {
	t.Helper()
	if cfg.AllowUID == nil {
		cfg.AllowUID = servetest.AllowAll
	}
	p := pool.Open(nil, pcfg, quiet)
	t.Cleanup(p.Close) // after the server's
	srv := New(cfg, p, quiet)
	return &fixture{srv: srv, pool: p, path: servetest.Serve(t, srv)}
}

// caller is xpracaller's 6.x caller (shared with encode/bench) under
// the names these tests use.
type caller struct {
	*xpracaller.Caller
	t  testing.TB
	uc *net.UnixConn
}

func dial(t testing.TB, path string) *caller {
	t.Helper()
	c := xpracaller.Dial(t, path)
	return &caller{Caller: c, t: t, uc: c.UC}
}

func (c *caller) send(p ...any)                  { c.t.Helper(); c.Send(p...) }
func (c *caller) expect(name string) conn.Packet { c.t.Helper(); return c.Expect(name) }
func (c *caller) handshake(encoding string) (caps.Caps, value.Dict) {
	c.t.Helper()
	return c.Handshake(encoding)
}
func (c *caller) expectDisconnect(reason string) string {
	c.t.Helper()
	return c.ExpectDisconnect(reason)
}

var (
	brief  = xpracaller.Brief
	hello6 = xpracaller.Hello6
	frame  = xpracaller.Frame
)

func mustEnv(t testing.TB, k string) string {
	v := os.Getenv(k)
	if v == "" {
		t.Fatalf("%s not set", k)
	}
	return v
}
