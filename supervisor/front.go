// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/xpra-proxy/xpra-proxy/launch"
)

// FrontConfig is how one TCP port carries plain xpra, TLS, WebSocket, WSS
// and HTTP (xpra's option names). The supervisor only reads the files;
// pre-auth processes do the parsing.
type FrontConfig struct {
	SSL                 string   `toml:"ssl"`                    // auto, on, off, tcp (xpra only), www (HTTP only)
	SSLCert             string   `toml:"ssl-cert"`               // PEM certificate (may also hold the key)
	SSLKey              string   `toml:"ssl-key"`                // PEM private key; root-only file is fine
	SSLKeyPassword      string   `toml:"ssl-key-password"`       // for a legacy encrypted PEM key
	SSLCACerts          string   `toml:"ssl-ca-certs"`           // client certificate CAs
	SSLClientVerifyMode string   `toml:"ssl-client-verify-mode"` // none, optional, required
	SSLProtocol         string   `toml:"ssl-protocol"`           // minimum: TLSv1_2 (default), TLSv1_3
	SSLCiphers          string   `toml:"ssl-ciphers"`
	HTML                string   `toml:"html"`      // on, off, auto, or the HTML5 client's directory
	TCPProxy            string   `toml:"tcp-proxy"` // HOST:PORT for traffic that is neither xpra nor ours
	SSLAuth             []string `toml:"ssl-auth"`  // modules for TLS; empty: tcp-auth
	WSAuth              []string `toml:"ws-auth"`   // modules for WebSocket; empty: tcp-auth
	WSSAuth             []string `toml:"wss-auth"`  // modules for WebSocket over TLS; empty: ssl-auth, then tcp-auth
}

// DefaultWWW is where Debian's xpra package puts the HTML5 client.
const DefaultWWW = "/usr/share/xpra/www"

func registerFrontFlags(fs *flag.FlagSet, c *FrontConfig) {
	fs.StringVar(&c.SSL, "ssl", "", "TLS on TCP ports: auto (default), on, off, tcp, www")
	fs.StringVar(&c.SSLCert, "ssl-cert", "", "TLS certificate file (PEM)")
	fs.StringVar(&c.SSLKey, "ssl-key", "", "TLS private key file (PEM; default: in the certificate file)")
	fs.StringVar(&c.SSLKeyPassword, "ssl-key-password", "", "password of an encrypted (legacy PEM) key; better: an unencrypted, root-only key file")
	fs.StringVar(&c.SSLCACerts, "ssl-ca-certs", "", "CA certificates for client certificates (PEM)")
	fs.StringVar(&c.SSLClientVerifyMode, "ssl-client-verify-mode", "", "none (default), optional, required")
	fs.StringVar(&c.SSLProtocol, "ssl-protocol", "", "lowest TLS version: TLSv1_2 (default) or TLSv1_3")
	fs.StringVar(&c.SSLCiphers, "ssl-ciphers", "", "TLS 1.2 cipher suites, colon separated (default: Go's secure set)")
	fs.StringVar(&c.HTML, "html", "", "serve the HTML5 client: auto (default), on, off, or its directory")
	fs.StringVar(&c.TCPProxy, "tcp-proxy", "", "forward traffic that is not for us to HOST:PORT")
	fs.Var(listFlag{&c.SSLAuth}, "ssl-auth", "auth module for TLS connections (default: tcp-auth)")
	fs.Var(listFlag{&c.WSAuth}, "ws-auth", "auth module for WebSocket connections (default: tcp-auth)")
	fs.Var(listFlag{&c.WSSAuth}, "wss-auth", "auth module for secure WebSocket connections (default: ssl-auth, then tcp-auth)")
}

func mergeFront(c *FrontConfig, cli FrontConfig) {
	for _, p := range []struct{ dst, src *string }{
		{&c.SSL, &cli.SSL}, {&c.SSLCert, &cli.SSLCert}, {&c.SSLKey, &cli.SSLKey},
		{&c.SSLKeyPassword, &cli.SSLKeyPassword}, {&c.SSLCACerts, &cli.SSLCACerts},
		{&c.SSLClientVerifyMode, &cli.SSLClientVerifyMode}, {&c.SSLProtocol, &cli.SSLProtocol},
		{&c.SSLCiphers, &cli.SSLCiphers}, {&c.HTML, &cli.HTML}, {&c.TCPProxy, &cli.TCPProxy},
	} {
		if *p.src != "" {
			*p.dst = *p.src
		}
	}
	for _, p := range []struct{ dst, src *[]string }{
		{&c.SSLAuth, &cli.SSLAuth}, {&c.WSAuth, &cli.WSAuth}, {&c.WSSAuth, &cli.WSSAuth},
	} {
		if len(*p.src) > 0 {
			*p.dst = *p.src
		}
	}
}

// authSpecs is the module chain of each transport, with xpra's fallbacks
// made explicit: a TLS or WebSocket connection on a TCP port is never
// authenticated less than the port's tcp-auth unless the admin says so.
func (c Config) authSpecs() map[string][]string {
	or := func(l ...[]string) []string {
		for _, x := range l {
			if len(x) > 0 {
				return x
			}
		}
		return nil
	}
	return map[string][]string{
		"unix": c.Auth,
		"tcp":  c.TCPAuth,
		"ssl":  or(c.SSLAuth, c.TCPAuth),
		"ws":   or(c.WSAuth, c.TCPAuth),
		"wss":  or(c.WSSAuth, c.SSLAuth, c.TCPAuth),
	}
}

// tlsCarries says whether a TLS connection on a TCP port can carry
// transport ("ssl": xpra inside TLS, "wss": WebSocket inside TLS): never
// without a certificate or with ssl=off; ssl=tcp carries only xpra,
// ssl=www only HTTP. As the pre-auth process reads the same option.
func (c FrontConfig) tlsCarries(transport string) bool {
	if c.SSLCert == "" {
		return false
	}
	switch c.SSL {
	case "off", "no", "false":
		return false
	case "tcp":
		return transport == "ssl"
	case "www":
		return transport == "wss"
	}
	return transport == "ssl" || transport == "wss"
}

// front reads the certificate files and builds the pre-auth processes'
// transport document. Errors here stop start-up: a missing key must not
// silently turn TLS off.
func (c FrontConfig) front() (launch.Front, error) {
	f := launch.Front{SSL: c.SSL, TCPProxy: c.TCPProxy, ClientVerifyMode: c.SSLClientVerifyMode,
		Protocol: c.SSLProtocol, Ciphers: c.SSLCiphers}
	switch c.SSL {
	case "", "auto", "on", "yes", "true", "off", "no", "false", "tcp", "www":
	default:
		return f, fmt.Errorf("ssl=%q: use auto, on, off, tcp or www", c.SSL)
	}
	switch c.HTML {
	case "", "auto":
		if st, err := os.Stat(DefaultWWW); err == nil && st.IsDir() {
			f.WWW = DefaultWWW
		}
	case "on", "yes", "true":
		f.WWW = DefaultWWW
	case "off", "no", "false":
	default:
		f.WWW = c.HTML
	}
	if f.WWW != "" {
		if st, err := os.Stat(f.WWW); err != nil || !st.IsDir() {
			return f, fmt.Errorf("html: %s is not a directory (install xpra's HTML5 client or set html=off)", f.WWW)
		}
	}
	f.KeyPassword = c.SSLKeyPassword
	if c.SSLCert == "" {
		if c.SSLKey != "" || c.SSLCACerts != "" {
			return f, errors.New("ssl-key and ssl-ca-certs need ssl-cert")
		}
		return f, nil
	}
	var err error
	if f.CertPEM, err = os.ReadFile(c.SSLCert); err != nil {
		return f, fmt.Errorf("ssl-cert: %w", err)
	}
	keyFile := c.SSLKey
	if keyFile == "" {
		keyFile = c.SSLCert // xpra allows the key in the certificate file
	}
	if f.KeyPEM, err = os.ReadFile(keyFile); err != nil {
		return f, fmt.Errorf("ssl-key: %w", err)
	}
	f.CertName, f.KeyName, f.CACerts = c.SSLCert, keyFile, c.SSLCACerts
	return f, nil
}
