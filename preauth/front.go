// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/xpra-proxy/xpra-proxy/launch"
	nettransport "github.com/xpra-proxy/xpra-proxy/preauth/transport"
)

// Front tells apart what arrived on a TCP port (PROTOCOL.md §7.3) and
// terminates it in this process (the xpra-proxy user): plain xpra, TLS,
// WebSocket and WSS continue as an xpra stream with the transport's name;
// HTTP is served here (the HTML5 client) until it upgrades to WebSocket;
// anything else goes to --tcp-proxy or gets a clean refusal. A nil
// connection with a nil error means the connection was fully handled.
type Front struct {
	Doc launch.Front
	Log *slog.Logger

	tlsConfig *tls.Config
}

// NewFront checks the document once (a bad certificate is a start-up
// error of every pre-auth process, logged, rather than a silent downgrade).
func NewFront(doc launch.Front, log *slog.Logger) (*Front, error) {
	f := &Front{Doc: doc, Log: log}
	if doc.TLS() {
		cfg, err := nettransport.ServerTLS(nettransport.TLSOptions{Cert: doc.CertName, Key: doc.KeyName,
			CertPEM: doc.CertPEM, KeyPEM: doc.KeyPEM, KeyPassword: doc.KeyPassword, CACerts: doc.CACerts,
			ClientVerifyMode: doc.ClientVerifyMode,
			Protocol:         doc.Protocol, Ciphers: doc.Ciphers})
		if err != nil {
			return nil, fmt.Errorf("TLS settings: %w", err)
		}
		f.tlsConfig = cfg
	}
	return f, nil
}

// Accept runs the front for one connection.
func (f *Front) Accept(ctx context.Context, nc net.Conn) (net.Conn, string, error) {
	// Every client speaks first; one slow to start gets the login time.
	first, _ := ctx.Deadline()
	kind, prefix, err := nettransport.PeekFrom(nc, nettransport.MaxPeek, first, nettransport.PeekTimeout)
	if err != nil {
		return nil, "", err
	}
	c, name := nettransport.WithPrefix(nc, prefix), "tcp"
	if kind == nettransport.ProxyHeader {
		// A load balancer's header from a peer not in proxy-protocol-from
		// (or a second one): believing it would let anyone choose the
		// address its limits and penalties apply to.
		f.Log.Warn("PROXY protocol header from a peer not in proxy-protocol-from: refused")
		return nil, "", errors.Join(errors.New("refused: a PROXY protocol header from an untrusted peer"), nettransport.Hangup(nc, refuseLinger))
	}
	if kind == nettransport.TLS {
		mode, err := nettransport.ParseSSLMode(orDefault(f.Doc.SSL, "auto"))
		if err != nil {
			return nil, "", err
		}
		if f.tlsConfig == nil || mode == nettransport.SSLOff {
			return nil, "", refuseText(nc, "TLS is not enabled on this port")
		}
		tc, inner, p, err := nettransport.WrapTLS(ctx, c, f.tlsConfig, mode)
		if err != nil {
			return nil, "", err
		}
		c, name, kind = nettransport.WithPrefix(tc, p), "ssl", inner
	}
	switch kind {
	case nettransport.Xpra, nettransport.NeedMore:
		// A silent peer is taken for an xpra client, as the reference
		// does: the login timeout deals with it.
		return c, name, nil
	case nettransport.HTTP:
		if f.Doc.WWW == "" {
			if f.Doc.TCPProxy != "" && name == "tcp" {
				return nil, "", f.forward(ctx, nc, prefix)
			}
			return nil, "", nettransport.RefuseHTTP(c)
		}
		ws, path, err := nettransport.ServeHTTP(ctx, c, nettransport.HTTPOptions{WWW: f.Doc.WWW,
			LinkRoots: nettransport.DefaultLinkRoots, Log: f.Log})
		if errors.Is(err, nettransport.ErrNoUpgrade) {
			return nil, "", nil // a browser fetched the client's files
		}
		if err != nil {
			return nil, "", err
		}
		f.Log.Debug("websocket upgrade", "path", path)
		if name == "ssl" {
			return ws, "wss", nil
		}
		return ws, "ws", nil
	}
	if f.Doc.TCPProxy != "" && name == "tcp" {
		return nil, "", f.forward(ctx, nc, prefix)
	}
	return nil, "", refuseText(c, "invalid packet header")
}

func (f *Front) forward(ctx context.Context, nc net.Conn, prefix []byte) error {
	f.Log.Info("forwarding to tcp-proxy", "to", f.Doc.TCPProxy)
	if err := nettransport.Forward(ctx, nc, prefix, f.Doc.TCPProxy); err != nil {
		return fmt.Errorf("tcp-proxy %s: %w", f.Doc.TCPProxy, err)
	}
	return nil
}

// refuseText answers traffic that is neither xpra nor HTTP the way the
// reference does: one plain-text line, then a clean end (close_notify
// inside TLS) and a moment for the client to read it.
func refuseText(c net.Conn, msg string) error {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := fmt.Fprintf(c, "disconnect: connection failed, %s?\n", msg)
	return errors.Join(fmt.Errorf("refused: %s", msg), err, nettransport.Hangup(c, refuseLinger))
}

// refuseLinger is how long a refused client has to read the refusal and close.
const refuseLinger = 500 * time.Millisecond

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
