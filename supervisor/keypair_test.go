// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestCheckKeyPair(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	certFor := func(pub, priv any) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	sec1, _ := x509.MarshalECPrivateKey(ec)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	ecCert := certFor(&ec.PublicKey, ec)
	for _, tc := range []struct {
		name      string
		cert, key []byte
		err       string // "" when usable
	}{
		{"pkcs8", ecCert, pkcs8(ec), ""},
		{"sec1", ecCert, ecPEM, ""},
		{"pkcs1", certFor(&rsaKey.PublicKey, rsaKey), rsaPEM, ""},
		{"key in the certificate file", append(append([]byte{}, ecCert...), ecPEM...), nil, ""},
		{"another key", ecCert, pkcs8(other), "not the certificate's"},
		{"no certificate", []byte("not a certificate\n"), ecPEM, "no PEM CERTIFICATE"},
		{"no key", ecCert, nil, "no PEM PRIVATE KEY"},
		{"broken key", ecCert, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "the private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkKeyPair(tc.cert, tc.key)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("checkKeyPair: %v, want %q", err, tc.err)
			}
		})
	}
}
