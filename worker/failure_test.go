// SPDX-License-Identifier: GPL-2.0-or-later

package worker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// TestServerFailure: each way a server fails gets its own words.
func TestServerFailure(t *testing.T) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	for _, tc := range []struct {
		name   string
		stage  string
		err    error
		reason string
		want   string
	}{
		{"hello timeout", stageHello, fmt.Errorf("read: %w", os.ErrDeadlineExceeded), packet.ReasonConnectionError, "did not answer the proxy's hello within 7s"},
		{"connect timeout", stageConnect, opErr(os.ErrDeadlineExceeded), packet.ReasonConnectionError, "timed out after 7s connecting"},
		{"refused", stageConnect, opErr(syscall.ECONNREFUSED), packet.ReasonConnectionError, "refused the connection"},
		{"closed", stageHello, fmt.Errorf("reading: %w", io.EOF), packet.ReasonConnectionError, "closed the connection before its hello"},
		{"reset", stageHello, opErr(syscall.ECONNRESET), packet.ReasonConnectionError, "closed the connection"},
		{"text", stageHello, &wire.TextMessage{Text: "HTTP/1.0 400 Bad Request"}, packet.ReasonVersionError, "does not speak xpra or speaks another version"},
		{"text refusal", stageHello, &wire.TextMessage{Text: "disconnect: too many"}, packet.ReasonConnectionError, "refused the connection: too many"},
		{"garbage", stageHello, fmt.Errorf("x: %w", wire.ErrInvalidHeader), packet.ReasonVersionError, "another version"},
		{"other", stageHello, errors.New("odd"), packet.ReasonConnectionError, "odd"},
	} {
		reason, detail := serverFailure(":7", tc.stage, 7*time.Second, tc.err)
		if reason != tc.reason || !strings.Contains(detail, tc.want) || !strings.Contains(detail, ":7") {
			t.Errorf("%s: %q %q, want %q containing %q", tc.name, reason, detail, tc.reason, tc.want)
		}
	}
}

// TestMismatchDetail: a server on the other side of xpra's 4.3 packet
// encoding change is named as such, with what to do; other failures are
// left to serverFailure. The texts are what real servers answered (6.5.3,
// 3.1.3) to the other release's hello.
func TestMismatchDetail(t *testing.T) {
	old, new6 := dialect{version: "3.1.3"}, dialect{version: "6.5.3", rencodePlus: true}
	for _, tc := range []struct {
		name string
		d    dialect
		err  error
		want []string // all in the detail; none: not a mismatch
	}{
		{"3.1 client, 6.x server", old, &wire.TextMessage{Text: "disconnect invalid packet encoding: 'rencode' decoder is not available"},
			[]string{"xpra 3.1.3", "rencode or bencode", "4.3 or later", "reads only rencodeplus", "not touched", "Attach to it with an xpra client of the server's release"}},
		{"6.x client, 3.1 server", new6, &wire.TextMessage{Text: "disconnect: failed to parse bencode packet"},
			[]string{"xpra 6.5.3", "writes rencodeplus", "older xpra (such as 3.1)", `"failed to parse bencode packet"`, "not touched", "or upgrade"}},
		{"6.x client, garbage", new6, fmt.Errorf("x: %w", wire.ErrInvalidHeader), []string{"older xpra"}},
		{"no version in the hello", dialect{}, &wire.TextMessage{Text: "disconnect: invalid packet encoding"}, []string{"this client writes rencode"}},
		{"3.1 client, a plain refusal", old, &wire.TextMessage{Text: "disconnect: too many"}, nil},
		{"6.x client, a plain refusal", new6, &wire.TextMessage{Text: "disconnect: too many"}, nil},
		{"3.1 client, HTTP", old, &wire.TextMessage{Text: "HTTP/1.0 400 Bad Request"}, nil},
		{"6.x client, closed", new6, io.EOF, nil},
	} {
		detail, ok := mismatchDetail(tc.d, tc.err)
		if ok != (tc.want != nil) {
			t.Errorf("%s: mismatch %v (%q), want %v", tc.name, ok, detail, tc.want != nil)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(detail, w) {
				t.Errorf("%s: no %q in %q", tc.name, w, detail)
			}
		}
	}
}
