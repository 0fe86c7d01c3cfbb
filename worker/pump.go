package worker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Pump carries the plain xpra stream between a terminated transport (TLS
// or WebSocket, read and written by this process) and the relay worker's
// end of a stream socketpair, both ways, until both directions end. It
// returns the bytes moved in each direction.
func Pump(outer net.Conn, stream *os.File) (toRelay, toClient int64, err error) {
	inner, err := net.FileConn(stream)
	stream.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("stream socket: %w", err)
	}
	defer inner.Close()
	_ = outer.SetDeadline(time.Time{}) // the relay's pings watch the peer now
	var wg sync.WaitGroup
	var errIn, errOut error
	wg.Go(func() {
		toRelay, errIn = io.Copy(inner, outer)
		closeWrite(inner)
	})
	toClient, errOut = io.Copy(outer, inner)
	closeWrite(outer)
	// The relay hung up: nothing more can reach it, so stop reading the client.
	_ = outer.SetReadDeadline(time.Now())
	wg.Wait()
	if isClosed(errIn) {
		errIn = nil
	}
	if isClosed(errOut) {
		errOut = nil
	}
	return toRelay, toClient, errors.Join(errIn, errOut)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

func isClosed(err error) bool {
	var ne net.Error
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
