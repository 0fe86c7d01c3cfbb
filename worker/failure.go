// SPDX-License-Identifier: GPL-2.0-or-later

package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// defaultServerHelloTimeout bounds connecting to the session and its
// hello when the supervisor sets none (server-hello-timeout).
const defaultServerHelloTimeout = 30 * time.Second

// serverFailure names why the session's server could not be reached or
// did not say hello, in the words both the client and the log get:
// a timeout, a refusal, a close and a server speaking something else
// are told apart, never all reported as "session not found".
// stage is "connecting" or "waiting for its hello".
func serverFailure(display, stage string, timeout time.Duration, err error) (reason, detail string) {
	reason = packet.ReasonConnectionError
	var ne net.Error
	var tm *wire.TextMessage
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		if stage == stageConnect {
			return reason, fmt.Sprintf("timed out after %s connecting to the server of %s", timeout, display)
		}
		return reason, fmt.Sprintf("the server of %s did not answer the proxy's hello within %s", display, timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return reason, fmt.Sprintf("the server of %s refused the connection", display)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return reason, fmt.Sprintf("the server of %s closed the connection %s", display, stage)
	case errors.As(err, &tm):
		if why, ok := tm.Disconnect(); ok {
			return reason, fmt.Sprintf("the server of %s refused the connection: %s", display, why)
		}
		return packet.ReasonVersionError, fmt.Sprintf("the server of %s does not speak xpra or speaks another version: %v", display, tm)
	case errors.Is(err, wire.ErrInvalidHeader):
		return packet.ReasonVersionError, fmt.Sprintf("the server of %s does not speak xpra or speaks another version: %v", display, err)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, os.ErrNotExist):
		return packet.ReasonSessionNotFound, fmt.Sprintf("no server socket for %s", display)
	}
	return reason, fmt.Sprintf("failed to connect to %s (%s): %v", display, stage, err)
}

const (
	stageConnect = "connecting"
	stageHello   = "before its hello"
)

// dialect is what the proxy knows of the client when a server fails:
// its xpra version (from its hello) and whether it writes rencodeplus,
// the packet encoding of xpra 4.3 and later (6.x reads nothing else;
// 3.1 and 4.0-4.2 read only rencode and bencode).
type dialect struct {
	version     string
	rencodePlus bool
}

// mismatchDetail recognises a server that could not decode the client's
// hello because it speaks the other side of xpra's 4.3 packet-encoding
// change, and says so in words: which side speaks what, and what to do.
// The server rejects the hello before it parses it, so its session is
// never touched. ok is false for any other failure.
func mismatchDetail(d dialect, err error) (detail string, ok bool) {
	var said string
	var tm *wire.TextMessage
	switch {
	case errors.As(err, &tm):
		said = tm.Text
	case errors.Is(err, wire.ErrInvalidHeader):
		said = err.Error()
	default:
		return "", false
	}
	said = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(said, "disconnect:"), "disconnect"))
	client := "this client"
	if d.version != "" {
		client = "this client, xpra " + d.version + ","
	}
	low := strings.ToLower(said)
	switch {
	case !d.rencodePlus && (strings.Contains(low, "rencode") || strings.Contains(low, "packet encoding")):
		// xpra 4.3+ ("'rencode' decoder is not available" in 6.x).
		return fmt.Sprintf("xpra versions do not match: %s writes rencode or bencode packets, "+
			"but the session's server is xpra 4.3 or later (6.x), which reads only rencodeplus "+
			"(it answered %q); the session was not touched. "+
			"Attach to it with an xpra client of the server's release (4.3 or later, e.g. 6.x).", client, said), true
	case d.rencodePlus && (strings.Contains(low, "bencode") || strings.Contains(low, "rencode") ||
		strings.Contains(low, "parse") || errors.Is(err, wire.ErrInvalidHeader)):
		// 3.1 reads a rencodeplus packet as bencode ("failed to parse
		// bencode packet").
		return fmt.Sprintf("xpra versions do not match: %s writes rencodeplus packets (xpra 4.3 and later), "+
			"but the session's server is an older xpra (such as 3.1), which reads only rencode or bencode "+
			"(it answered %q); the session was not touched. "+
			"Attach to it with an xpra client of the server's release (e.g. 3.1), or upgrade the session's server.", client, said), true
	}
	return "", false
}
