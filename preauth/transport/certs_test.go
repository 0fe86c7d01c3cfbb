// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pki is a test CA with a server certificate for 127.0.0.1 and a client
// certificate, all made here with crypto/x509.
type pki struct {
	dir               string
	caFile            string
	certFile, keyFile string // server, PEM
	clientCert        tls.Certificate
	pool              *x509.CertPool // trusts the CA
	serverKey         *ecdsa.PrivateKey
	serverCertPEM     []byte
	otherCA           string // a CA that signed nothing here
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	caKey, caCert, caPEM := makeCA(t, "xpra-proxy test CA")
	p.caFile = p.write(t, "ca.pem", caPEM)
	_, _, otherPEM := makeCA(t, "unrelated CA")
	p.otherCA = p.write(t, "other-ca.pem", otherPEM)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(caCert)

	var keyPEM []byte
	p.serverKey, p.serverCertPEM, keyPEM = makeLeaf(t, caKey, caCert, false)
	p.certFile = p.write(t, "cert.pem", p.serverCertPEM)
	p.keyFile = p.write(t, "key.pem", keyPEM)

	_, ccPEM, ckPEM := makeLeaf(t, caKey, caCert, true)
	cc, err := tls.X509KeyPair(ccPEM, ckPEM)
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert = cc
	return p
}

func (p *pki) write(t testing.TB, name string, data []byte) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func makeCA(t testing.TB, cn string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func makeLeaf(t testing.TB, caKey *ecdsa.PrivateKey, ca *x509.Certificate, client bool) (*ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.Subject.CommonName = "alice"
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
