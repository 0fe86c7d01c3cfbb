package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
