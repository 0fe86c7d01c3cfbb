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
