package preauth

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
	// Large buffers: each read from the relay becomes one WebSocket frame
	// or a few TLS records, so fewer, bigger writes cost less per byte.
	wg.Go(func() {
		toRelay, errIn = io.CopyBuffer(struct{ io.Writer }{inner}, struct{ io.Reader }{outer}, make([]byte, pumpBuffer))
		closeWrite(inner)
	})
	// (Wrapped so that no ReaderFrom/WriterTo shortcut drops the buffer.)
	toClient, errOut = io.CopyBuffer(struct{ io.Writer }{outer}, struct{ io.Reader }{inner}, make([]byte, pumpBuffer))
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

// pumpBuffer is each direction's copy buffer (measured: 256 KiB halves the
// WebSocket transport's CPU per MB against io.Copy's 32 KiB).
const pumpBuffer = 256 << 10

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
