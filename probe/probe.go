// SPDX-License-Identifier: GPL-2.0-or-later

// Package probe is a small xpra client: it connects to a server (or to our
// proxy), says hello, answers a password challenge, optionally over AES,
// and returns the server's reply to a one-shot request (version, info, id,
// connect_test). Tests and the xpra-probe command use it.
package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/challenge"
	"github.com/xpra-proxy/xpra-proxy/protocol/cipher"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
	"github.com/xpra-proxy/xpra-proxy/protocol/xpraurl"
)

// Version is the protocol generation the probe announces: it speaks 3.1's
// dialect (flat caps, legacy rencode), which 3.1 servers require.
const Version = "3.1.3"

// Options says where to connect and what to ask.
type Options struct {
	URL           string       // tcp://user:pass@host:port/DISPLAY, socket:///path, ...
	Password      string       // overrides the URL's password when set
	Username      string       // overrides the URL's username when set (any bytes: tests send what a URL cannot)
	EncryptionKey []byte       // AES secret (the server's keyfile); nil: no AES
	Request       string       // "version", "info", "id", "connect_test", or Connect
	LocalAddr     *net.TCPAddr // where TCP connections come from; nil: the system's choice
	Timeout       time.Duration
}

// Connect as a Request makes an ordinary (window-less) client connection
// and returns the server's hello: through a proxy, it shows which session
// was reached (its "display").
const Connect = "connect"

// Result is what the server answered.
type Result struct {
	Reply      value.Dict           // the hello the server sent back
	Challenge  *challenge.Challenge // the challenge, if the server sent one
	Encrypted  bool                 // the exchange used AES
	Connection time.Duration        // connect until the first server packet
}

// Run connects, asks and returns the reply. A server's refusal is returned
// as a *conn.DisconnectError carrying its reason.
func Run(ctx context.Context, o Options) (*Result, error) {
	res, nc, err := Open(ctx, o)
	if nc != nil {
		nc.Close()
	}
	return res, err
}

// Open is Run that leaves the connection open after the server's reply
// (nil on error), for a caller that holds connections, as an attached
// client does. The caller closes it.
func Open(ctx context.Context, o Options) (*Result, net.Conn, error) {
	target, err := xpraurl.Parse(o.URL, xpraurl.V3)
	if err != nil {
		return nil, nil, fmt.Errorf("probe: %w", err)
	}
	if o.Password != "" {
		target.Password, target.HasPassword = o.Password, true
	}
	if o.Request == "" {
		o.Request = "version"
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	nc, err := dial(ctx, target, o.LocalAddr)
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := nc.SetDeadline(dl); err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("probe: setting deadline: %w", err)
		}
	}
	s := &session{o: o, target: target, c: conn.New(nc), start: time.Now()}
	res, err := s.run()
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("probe: clearing deadline: %w", err)
	}
	return res, nc, nil
}

func dial(ctx context.Context, t xpraurl.Target, local *net.TCPAddr) (net.Conn, error) {
	c, err := t.DialFrom(ctx, local)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	return c, nil
}

type session struct {
	o      Options
	target xpraurl.Target
	c      *conn.Conn
	start  time.Time
	params cipher.Params // our receive-side AES parameters
	res    Result
}

func (s *session) run() (*Result, error) {
	// A 3.1 server answers "version" before it looks at encryption or
	// authentication, in the clear, so AES only applies to other requests.
	if s.o.EncryptionKey != nil && s.o.Request != "version" {
		var err error
		if s.params, err = cipher.NewParams(cipher.V3); err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		s.res.Encrypted = true
	}
	if err := s.sendHello(nil); err != nil {
		return nil, err
	}
	for first := true; ; first = false {
		p, err := s.c.ReadPacket()
		if first {
			s.res.Connection = time.Since(s.start)
		}
		if err != nil {
			var tm *wire.TextMessage
			if errors.As(err, &tm) {
				if reason, ok := tm.Disconnect(); ok {
					return nil, &conn.DisconnectError{Reason: reason}
				}
			}
			return nil, fmt.Errorf("probe: reading from server: %w", err)
		}
		switch p[0] {
		case packet.Hello:
			var d value.Dict
			ok := len(p) >= 2
			if ok {
				d, ok = p[1].(value.Dict)
			}
			if !ok {
				return nil, fmt.Errorf("probe: server hello without capabilities")
			}
			s.res.Reply = d
			return &s.res, nil
		case packet.Challenge:
			if err := s.answer(p); err != nil {
				return nil, err
			}
		case packet.Disconnect:
			reason, details := packet.DisconnectReason(p)
			return nil, &conn.DisconnectError{Reason: reason, Details: details}
		default:
			// Pings and the like before the reply are not for a one-shot probe.
		}
	}
}

// sendHello sends our capabilities, plus the challenge answer when given.
func (s *session) sendHello(answer value.Dict) error {
	d := value.Dict{
		{Key: "version", Value: Version},
		{Key: "client_type", Value: "xpra-proxy-probe"},
		{Key: "uuid", Value: newUUID()},
		{Key: "username", Value: s.username()},
		{Key: "rencode", Value: true},
		{Key: "bencode", Value: true},
		{Key: "encoders", Value: []any{"rencode", "bencode"}},
		{Key: "compressors", Value: []any{"lz4", "zlib"}},
		{Key: "lz4", Value: true},
		{Key: "zlib", Value: true},
		{Key: "compression_level", Value: int64(1)},
		{Key: "digest", Value: strings(digest.Supported())},
		{Key: "salt-digest", Value: strings(digest.SupportedSalt())},
		{Key: "request", Value: s.o.Request},
		{Key: s.o.Request + "_request", Value: true},
		{Key: "info-namespace", Value: true},
		{Key: "namespace", Value: true},
		{Key: "ui_client", Value: false},
		{Key: "windows", Value: false},
		{Key: "wants_aliases", Value: false},
		{Key: "websocket.multi-packet", Value: true},
	}
	if s.o.Request == Connect {
		// A plain (window-less) client connection: no request at all.
		d.Delete("request")
		d.Delete(Connect + "_request")
	}
	if s.target.HasPassword {
		d.Set("challenge", true)
	}
	if s.target.Display != "" {
		d.Set("display", s.target.Display)
	}
	if s.res.Encrypted {
		for _, it := range s.params.Caps() {
			d = append(d, it)
		}
	}
	d = append(d, answer...)
	if err := s.c.WritePacket(conn.Packet{packet.Hello, d}); err != nil {
		return fmt.Errorf("probe: sending hello: %w", err)
	}
	if s.res.Encrypted {
		// Every hello makes the server restart its outbound CBC chain from
		// our parameters, so our receive side restarts too.
		dec, err := cipher.NewDecrypter(s.params, s.o.EncryptionKey)
		if err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		s.c.SetDecrypter(dec)
	}
	return nil
}

func (s *session) username() string {
	if s.o.Username != "" {
		return s.o.Username
	}
	if s.target.Username != "" {
		return s.target.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "probe"
}

// answer computes the challenge response and sends the second hello.
func (s *session) answer(p conn.Packet) error {
	ch, err := challenge.ParseChallenge(p)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	s.res.Challenge = &ch
	if !s.target.HasPassword {
		return fmt.Errorf("probe: the server requires a password (%s, prompt %q)", ch.Digest, ch.Prompt)
	}
	if s.res.Encrypted {
		d, ok := ch.CipherCaps.(value.Dict)
		if !ok {
			return fmt.Errorf("probe: AES requested but the challenge carries no cipher parameters")
		}
		peer, ok, err := cipher.ParseCaps(d)
		if err != nil || !ok {
			return fmt.Errorf("probe: server cipher parameters: %v (present %v)", err, ok)
		}
		enc, err := cipher.NewEncrypter(peer, s.o.EncryptionKey)
		if err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		s.c.SetEncrypter(enc)
	}
	answer, err := ch.Answer([]byte(s.target.Password))
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return s.sendHello(answer)
}

// ReplyCaps is a typed view of the reply.
func (r *Result) ReplyCaps() caps.Caps { return caps.New(r.Reply) }

func strings(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func newUUID() string {
	var b [20]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux (Go 1.24+ panics instead)
	return hex.EncodeToString(b[:])
}
