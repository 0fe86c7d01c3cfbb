// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// TLSOptions are xpra's ssl-* options for the server side.
type TLSOptions struct {
	// Cert (ssl-cert): PEM certificate chain, leaf first. It may also
	// hold the private key, as xpra allows.
	Cert string
	// Key (ssl-key): PEM private key; "" means it is in Cert.
	Key string
	// KeyPassword (ssl-key-password) decrypts a key in legacy encrypted
	// PEM ("Proc-Type: 4,ENCRYPTED"). PKCS#8-encrypted keys are refused:
	// Go's standard library cannot decrypt them.
	KeyPassword string
	// CertPEM and KeyPEM, when set, are the contents of ssl-cert and
	// ssl-key, read by root and passed in (the key file stays root-only);
	// Cert and Key then only name them in errors.
	CertPEM, KeyPEM []byte
	// CACerts (ssl-ca-certs): PEM file or directory of CA certificates
	// that client certificates must chain to; "" or "default" is the
	// system's roots. Read only when client certificates are verified.
	CACerts string
	// ClientVerifyMode (ssl-client-verify-mode): "none" (also ""),
	// "optional" (verify a certificate if the client sends one) or
	// "required". xpra defaults to optional; "" here means none, because
	// the proxy grants nothing for a certificate and asking for one makes
	// browsers prompt.
	ClientVerifyMode string
	// Protocol (ssl-protocol): the lowest TLS version. "", "TLS",
	// "SSLv23" and "TLSv1_2" mean TLS 1.2 (1.3 is offered too, unlike
	// Python's PROTOCOL_TLSv1_2); "TLSv1_3" means 1.3 only. Older ones are
	// refused.
	Protocol string
	// Ciphers (ssl-ciphers): "", "DEFAULT" or "HIGH" keep Go's secure
	// defaults; otherwise a list of TLS 1.2 suites separated by ':', ','
	// or spaces, in Go (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) or OpenSSL
	// (ECDHE-RSA-AES128-GCM-SHA256) spelling. TLS 1.3 suite names are
	// accepted and change nothing: Go always enables all three. Unknown
	// and insecure suites are refused.
	Ciphers string
}

// ALPNHTTP is the ALPN protocol a browser offers; negotiating it means HTTP.
const ALPNHTTP = "http/1.1"

// ServerTLS builds the server's TLS configuration from xpra's options.
// It advertises ALPN "http/1.1" so WrapTLS can tell browsers apart
// without reading, but never refuses a client that offers other ALPN
// protocols only (it then negotiates none).
func ServerTLS(o TLSOptions) (*tls.Config, error) {
	cert, err := loadKeyPair(o)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPNHTTP},
		// No TLS 1.3 NewSessionTicket after the handshake: xpra's client
		// reads and writes its SSL socket from two threads, which OpenSSL
		// does not allow; a ticket processed by its reader while its
		// writer sends the hello loses the hello (a 40 s stall, "server
		// did not disconnect us") or breaks the record layer ("internal
		// error", records of version 0). xpra's own server sends none
		// either (num_tickets = 0). Its clients never resume a session.
		SessionTicketsDisabled: true,
	}
	if cfg.MinVersion, err = parseProtocol(o.Protocol); err != nil {
		return nil, err
	}
	if cfg.CipherSuites, err = parseCiphers(o.Ciphers, cfg.MinVersion); err != nil {
		return nil, err
	}
	switch strings.ToLower(o.ClientVerifyMode) {
	case "", "none":
		cfg.ClientAuth = tls.NoClientCert
	case "optional":
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case "required":
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("transport: ssl-client-verify-mode %q: want none, optional or required", o.ClientVerifyMode)
	}
	if cfg.ClientAuth != tls.NoClientCert {
		if cfg.ClientCAs, err = loadCAs(o.CACerts); err != nil {
			return nil, err
		}
	}
	// Go refuses a handshake whose ALPN offer has nothing in common with
	// NextProtos; an xpra client offering its own protocol must still get in.
	noALPN := cfg.Clone()
	noALPN.NextProtos = nil
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if len(h.SupportedProtos) == 0 || slices.Contains(h.SupportedProtos, ALPNHTTP) {
			return nil, nil
		}
		return noALPN, nil
	}
	return cfg, nil
}

func loadKeyPair(o TLSOptions) (tls.Certificate, error) {
	if o.CertPEM != nil {
		keyFile, keyData := o.Key, o.KeyPEM
		if keyData == nil {
			keyFile, keyData = o.Cert, o.CertPEM
		}
		return parseKeyPair(o, o.CertPEM, keyFile, keyData)
	}
	if o.Cert == "" {
		return tls.Certificate{}, errors.New("transport: ssl-cert is required for TLS")
	}
	certData, err := os.ReadFile(o.Cert)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: ssl-cert: %w", err)
	}
	keyFile, keyData := o.Cert, certData
	if o.Key != "" {
		keyFile = o.Key
		if keyData, err = os.ReadFile(o.Key); err != nil {
			return tls.Certificate{}, fmt.Errorf("transport: ssl-key: %w", err)
		}
	}
	return parseKeyPair(o, certData, keyFile, keyData)
}

func parseKeyPair(o TLSOptions, certData []byte, keyFile string, keyData []byte) (tls.Certificate, error) {
	var certPEM []byte
	var key *pem.Block
	for rest := certData; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certPEM = append(certPEM, pem.EncodeToMemory(b)...)
		}
	}
	for rest := keyData; key == nil; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			key = b
		}
	}
	if certPEM == nil {
		return tls.Certificate{}, fmt.Errorf("transport: ssl-cert %s: no PEM certificate", o.Cert)
	}
	if key == nil {
		return tls.Certificate{}, fmt.Errorf("transport: %s: no PEM private key (set ssl-key)", keyFile)
	}
	if key.Type == "ENCRYPTED PRIVATE KEY" {
		return tls.Certificate{}, fmt.Errorf("transport: ssl-key %s is PKCS#8-encrypted, which Go cannot decrypt; "+
			"store it decrypted and readable only by the proxy (openssl pkey -in KEY -out PLAIN)", keyFile)
	}
	//nolint:staticcheck // legacy PEM encryption is weak, but decrypting a local file is all we do.
	if x509.IsEncryptedPEMBlock(key) {
		if o.KeyPassword == "" {
			return tls.Certificate{}, fmt.Errorf("transport: ssl-key %s is encrypted: set ssl-key-password", keyFile)
		}
		//nolint:staticcheck // see above
		der, err := x509.DecryptPEMBlock(key, []byte(o.KeyPassword))
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("transport: ssl-key %s: decrypting with ssl-key-password: %w", keyFile, err)
		}
		key = &pem.Block{Type: key.Type, Bytes: der}
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(key))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: ssl-cert %s with key %s: %w", o.Cert, keyFile, err)
	}
	return cert, nil
}

func parseProtocol(s string) (uint16, error) {
	switch strings.ToUpper(s) {
	case "", "TLS", "SSLV23", "TLSV1_2", "TLSV1.2":
		return tls.VersionTLS12, nil
	case "TLSV1_3", "TLSV1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("transport: ssl-protocol %q: want TLS, TLSv1_2 or TLSv1_3 (older versions are insecure)", s)
}

// openSSLNames spells Go's secure TLS 1.2 suites as OpenSSL does.
var openSSLNames = map[string]string{
	"ECDHE-ECDSA-AES128-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
	"ECDHE-ECDSA-AES256-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
	"ECDHE-RSA-AES128-SHA":          "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
	"ECDHE-RSA-AES256-SHA":          "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
	"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}

// parseCiphers returns nil for Go's defaults, else the listed suites.
func parseCiphers(s string, minVersion uint16) ([]uint16, error) {
	names := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' || r == ' ' })
	if len(names) == 0 || len(names) == 1 && (strings.EqualFold(names[0], "DEFAULT") || strings.EqualFold(names[0], "HIGH")) {
		return nil, nil
	}
	var ids []uint16
	tls13 := false
	for _, n := range names {
		if goName, ok := openSSLNames[n]; ok {
			n = goName
		}
		if i := slices.IndexFunc(tls.CipherSuites(), func(c *tls.CipherSuite) bool { return c.Name == n }); i >= 0 {
			c := tls.CipherSuites()[i]
			if slices.Contains(c.SupportedVersions, tls.VersionTLS13) {
				tls13 = true
				continue
			}
			ids = append(ids, c.ID)
			continue
		}
		if slices.ContainsFunc(tls.InsecureCipherSuites(), func(c *tls.CipherSuite) bool { return c.Name == n }) {
			return nil, fmt.Errorf("transport: ssl-ciphers: %s is insecure", n)
		}
		return nil, fmt.Errorf("transport: ssl-ciphers: unknown suite %q (use Go or OpenSSL names of TLS 1.2 suites, or DEFAULT)", n)
	}
	if len(ids) == 0 && tls13 && minVersion < tls.VersionTLS13 {
		return nil, errors.New("transport: ssl-ciphers lists TLS 1.3 suites only, which Go always enables: set ssl-protocol=TLSv1_3 instead")
	}
	return ids, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	if path == "" || strings.EqualFold(path, "default") {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("transport: ssl-ca-certs default: %w", err)
		}
		return pool, nil
	}
	files := []string{path}
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("transport: ssl-ca-certs: %w", err)
	} else if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("transport: ssl-ca-certs: %w", err)
		}
		files = files[:0]
		for _, e := range entries {
			if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	pool := x509.NewCertPool()
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("transport: ssl-ca-certs: %w", err)
		}
		if pool.AppendCertsFromPEM(data) {
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("transport: ssl-ca-certs %s: no PEM certificate found", path)
	}
	return pool, nil
}

// SSLMode is xpra's ssl option: what a TLS connection on a TCP port carries.
type SSLMode string

const (
	SSLAuto SSLMode = "auto" // ALPN http/1.1 or an HTTP request line inside means HTTP, else xpra
	SSLWWW  SSLMode = "www"  // always HTTP (and websocket)
	SSLTCP  SSLMode = "tcp"  // always the plain xpra stream
	SSLOff  SSLMode = "off"  // TLS is not accepted
)

// ParseSSLMode reads xpra's ssl option (on/yes/true mean auto).
func ParseSSLMode(s string) (SSLMode, error) {
	switch strings.ToLower(s) {
	case "auto", "on", "yes", "true", "1":
		return SSLAuto, nil
	case "www":
		return SSLWWW, nil
	case "tcp":
		return SSLTCP, nil
	case "off", "no", "false", "0":
		return SSLOff, nil
	}
	return "", fmt.Errorf("transport: ssl %q: want auto, on, off, www or tcp", s)
}

// HandshakeTimeout bounds a TLS handshake when the context allows longer.
const HandshakeTimeout = 10 * time.Second

// WrapTLS completes the server handshake on nc (wrap it WithPrefix if
// bytes were peeked) and decides what the decrypted stream carries
// (PROTOCOL.md §7.3): HTTP or Xpra in modes www and tcp without reading;
// in mode auto, HTTP if ALPN http/1.1 was negotiated, else whatever Sniff
// says of up to MaxPeek decrypted bytes read within PeekTimeout (NeedMore
// if the client said too little: xpra then assumes xpra). Continue with
// WithPrefix(tc, prefix). The caller closes nc on error.
func WrapTLS(ctx context.Context, nc net.Conn, cfg *tls.Config, mode SSLMode) (tc *tls.Conn, kind Kind, prefix []byte, err error) {
	if mode == SSLOff {
		return nil, NeedMore, nil, errors.New("transport: TLS is off (ssl=off)")
	}
	tc = tls.Server(nc, cfg)
	hctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, NeedMore, nil, fmt.Errorf("transport: TLS handshake with %s: %w", nc.RemoteAddr(), err)
	}
	switch mode {
	case SSLWWW:
		return tc, HTTP, nil, nil
	case SSLTCP:
		return tc, Xpra, nil, nil
	}
	if tc.ConnectionState().NegotiatedProtocol == ALPNHTTP {
		return tc, HTTP, nil, nil
	}
	first, _ := ctx.Deadline() // the client speaks first: wait for it as long as ctx allows
	kind, prefix, err = PeekFrom(tc, MaxPeek, first, PeekTimeout)
	if err != nil {
		return nil, kind, prefix, fmt.Errorf("transport: inside TLS: %w", err)
	}
	return tc, kind, prefix, nil
}
