// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// checkKeyPair is --check-config's look at the admin's certificate and
// key: a certificate, a private key, and the key the certificate's. Without
// crypto/tls, which stays out of root (TLS is the pre-auth process's):
// x509 and pem read a file root was given, not bytes from the network.
func checkKeyPair(certPEM, keyPEM []byte) error {
	var cert *x509.Certificate
	var key crypto.Signer
	for _, data := range [][]byte{certPEM, keyPEM} {
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			switch {
			case b.Type == "CERTIFICATE" && cert == nil:
				c, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					return fmt.Errorf("the certificate: %w", err)
				}
				cert = c
			case bytes.HasSuffix([]byte(b.Type), []byte("PRIVATE KEY")) && key == nil:
				k, err := parseKey(b.Bytes)
				if err != nil {
					return fmt.Errorf("the private key (%s): %w", b.Type, err)
				}
				key = k
			}
		}
	}
	switch {
	case cert == nil:
		return errors.New("no PEM CERTIFICATE block")
	case key == nil:
		return errors.New("no PEM PRIVATE KEY block (in ssl-key, or in ssl-cert beside the certificate)")
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("the private key is not the certificate's")
	}
	return nil
}

func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("not a signing key")
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		return nil, errors.New("neither PKCS#8, SEC 1 (EC) nor PKCS#1 (RSA)")
	}
	return k, nil
}
