// SPDX-License-Identifier: GPL-2.0-or-later

package launch

import (
	"encoding/json"
	"fmt"
	"os"
)

// Front is the document the supervisor gives every pre-auth process of a
// TCP listener: how to tell transports apart and terminate them. It holds
// the TLS private key, so it goes only to pre-auth processes (the
// xpra-proxy user), never to a relay worker (the session's user, who could
// read its own process's memory). The supervisor reads the files as root
// and never parses them; the pre-auth process does.
type Front struct {
	WWW      string `json:"www,omitempty"`       // HTML5 client directory; "" = HTTP not served
	TCPProxy string `json:"tcp_proxy,omitempty"` // HOST:PORT for non-xpra traffic; "" = refuse it
	SSL      string `json:"ssl,omitempty"`       // xpra's --ssl: auto, on, off, tcp, www

	CertPEM          []byte `json:"cert_pem,omitempty"`
	KeyPEM           []byte `json:"key_pem,omitempty"`
	KeyPassword      string `json:"key_password,omitempty"`
	CertName         string `json:"cert_name,omitempty"` // file names, for messages
	KeyName          string `json:"key_name,omitempty"`
	CACerts          string `json:"ca_certs,omitempty"` // a path: CA certificates are public
	ClientVerifyMode string `json:"client_verify_mode,omitempty"`
	Protocol         string `json:"protocol,omitempty"`
	Ciphers          string `json:"ciphers,omitempty"`
}

// TLS reports whether a certificate is configured.
func (f Front) TLS() bool { return len(f.CertPEM) > 0 }

// WriteFront stores f in a sealed memfd; one is shared by all pre-auth
// processes (each reads it from offset 0).
func WriteFront(f Front) (*os.File, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("front: %w", err)
	}
	return Memfd("front", b)
}

// ReadFront decodes the front document.
func ReadFront(f *os.File) (Front, error) {
	var fr Front
	b, err := ReadAll(f, MaxSize)
	if err != nil {
		return fr, fmt.Errorf("front: %w", err)
	}
	if err := json.Unmarshal(b, &fr); err != nil {
		return fr, fmt.Errorf("front: %w", err)
	}
	return fr, nil
}
