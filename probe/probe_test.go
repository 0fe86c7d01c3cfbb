// SPDX-License-Identifier: GPL-2.0-or-later

package probe_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
)

// These run against real xpra 3.1.3 servers (root + Debian's xpra; CI has
// both). One server asks for a password over plain TCP; the other also
// requires AES. The unix socket of the first takes no password.
func TestAgainstRealXpra(t *testing.T) {
	xpralab.Require(t)
	dir := xpralab.Dir(t)
	key := filepath.Join(dir, "aes.key")
	if err := os.WriteFile(key, []byte("lab-aes-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	aesKey := []byte("lab-aes-secret")
	servers := xpralab.StartAll(t,
		xpralab.Options{Args: []string{"--tcp-auth=password,value=secret", "--ws-auth=password,value=secret"}, WS: true},
		xpralab.Options{
			Args: []string{"--tcp-auth=password,value=secret", "--tcp-encryption=AES", "--tcp-encryption-keyfile=" + key},
		})
	plain, aes := servers[0], servers[1]

	ctx := context.Background()
	tests := []struct {
		name      string
		o         probe.Options
		reason    string // the server's refusal, if one is expected
		errText   string // another error expected
		key, want string // a reply key and its expected value ("" = present)
		challenge bool
	}{
		{name: "version without a password", o: probe.Options{URL: plain.TCP(""), Request: "version"}, key: "version", want: "3.1.3"},
		{name: "info with the password", o: probe.Options{URL: plain.TCP("alice:secret"), Request: "info"}, key: "server.mode", challenge: true},
		{name: "id with the password", o: probe.Options{URL: plain.TCP("alice:secret"), Request: "id"}, key: "display", want: plain.Display, challenge: true},
		{name: "info with a wrong password", o: probe.Options{URL: plain.TCP("alice:wrong"), Request: "info"}, reason: "authentication failed"},
		{name: "info over the unix socket", o: probe.Options{URL: "socket://" + plain.SocketPath, Request: "info"}, key: "server.mode"},
		{name: "id over the unix socket", o: probe.Options{URL: plain.SocketPath, Request: "id"}, key: "display", want: plain.Display},
		{name: "info over websocket", o: probe.Options{URL: fmt.Sprintf("ws://alice:secret@127.0.0.1:%d/", plain.WSPort), Request: "info"}, key: "server.mode", challenge: true},
		{name: "wrong password over websocket", o: probe.Options{URL: fmt.Sprintf("ws://alice:wrong@127.0.0.1:%d/", plain.WSPort), Request: "info"}, reason: "authentication failed"},
		{name: "AES version", o: probe.Options{URL: aes.TCP(""), Request: "version", EncryptionKey: aesKey}, key: "version", want: "3.1.3"},
		{name: "AES info with the password", o: probe.Options{URL: aes.TCP("alice:secret"), Request: "info", EncryptionKey: aesKey}, key: "server.mode", challenge: true},
		{name: "AES info with a wrong password", o: probe.Options{URL: aes.TCP("alice:wrong"), Request: "info", EncryptionKey: aesKey}, reason: "authentication failed"},
		{name: "AES with the wrong key", o: probe.Options{URL: aes.TCP("alice:secret"), Request: "info", EncryptionKey: []byte("not-the-key")}, errText: "wrong key"},
		{name: "AES required but not used", o: probe.Options{URL: aes.TCP("alice:secret"), Request: "info"}, reason: "missing encryption tokens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Timeout = 30 * time.Second
			res, err := probe.Run(ctx, tc.o)
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("want an error about %q, got %v", tc.errText, err)
				}
				return
			}
			if tc.reason != "" {
				var de *conn.DisconnectError
				if !errors.As(err, &de) {
					t.Fatalf("want the server's refusal %q, got %v", tc.reason, err)
				}
				if !strings.Contains(de.Reason+" "+strings.Join(de.Details, " "), tc.reason) {
					t.Fatalf("refusal %q, want %q", de.Error(), tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, ok := res.ReplyCaps().Lookup(tc.key)
			if !ok {
				t.Fatalf("reply has no %q (%d keys)", tc.key, len(res.Reply))
			}
			if tc.want != "" && res.ReplyCaps().Str(tc.key, "") != tc.want {
				t.Fatalf("%s = %v, want %q", tc.key, got, tc.want)
			}
			if tc.challenge != (res.Challenge != nil) {
				t.Fatalf("challenge sent: %v, want %v", res.Challenge != nil, tc.challenge)
			}
			if tc.o.EncryptionKey != nil && tc.o.Request != "version" && !res.Encrypted {
				t.Fatal("the exchange was not encrypted")
			}
		})
	}
}
