// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	nettransport "github.com/xpra-proxy/xpra-proxy/preauth/transport"
)

// Pump carries the plain xpra stream between a terminated transport (TLS
// or WebSocket, read and written by this process) and the relay worker's
// end of a stream socketpair, both ways, until both directions end. It
// returns the bytes moved in each direction.
//
// When the relay ends first, the client gets endGrace to hang up after
// the relay's last packet, then the transport's own goodbye (a WebSocket
// close frame, a TLS close_notify, then the TCP FIN) and endGrace more,
// while what it still sends is read and dropped: closing with unread bytes would reset the connection, and a
// reset can destroy the relay's last packets before the client reads them.
// Closing stop ends the relay's side here as if the relay had ended.
func Pump(outer net.Conn, stream *os.File, stop <-chan struct{}) (toRelay, toClient int64, err error) {
	inner, err := net.FileConn(stream)
	stream.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("stream socket: %w", err)
	}
	defer inner.Close()
	pumped := make(chan struct{})
	defer close(pumped)
	var stopped atomic.Bool
	go func() {
		select {
		case <-stop:
			stopped.Store(true)
			_ = inner.SetReadDeadline(time.Now())
		case <-pumped:
		}
	}()
	_ = outer.SetDeadline(time.Time{}) // the relay's pings watch the peer now
	var wg sync.WaitGroup
	var errIn, errOut error
	var ending atomic.Bool // the relay has ended and the client has our goodbye
	// Large buffers: each read from the relay becomes one WebSocket frame
	// or a few TLS records, so fewer, bigger writes cost less per byte.
	clientDone := make(chan struct{})
	wg.Go(func() {
		defer close(clientDone)
		toRelay, errIn = fromClient(inner, outer)
		if ending.Load() && gone(errIn) {
			// A client that closes without reading our close_notify or
			// close frame resets the connection: it had all the relay
			// sent, and it chose to leave (seen with clients slower than
			// the relay's wait for them, 50 at once on two cores).
			errIn = nil
		}
		closeWrite(inner)
	})
	// (Wrapped so that no ReaderFrom/WriterTo shortcut drops the buffer.)
	toClient, errOut = io.CopyBuffer(struct{ io.Writer }{outer}, struct{ io.Reader }{inner}, make([]byte, pumpBuffer))
	ending.Store(true)
	// The client hangs up first, as after xpra's own server's goodbye: a
	// close frame sent right behind the relay's last packet raced it in
	// xpra 3.1.3's client, whose reader reported "Connection lost" while
	// its parser still held the "server shutdown" disconnect. So our
	// goodbye waits for the client to close, endGrace at most; the client
	// then has endGrace more to close its side.
	select {
	case <-clientDone:
	case <-time.After(endGrace):
	}
	errEnd := nettransport.CloseWrite(outer)
	_ = outer.SetReadDeadline(time.Now().Add(endGrace))
	wg.Wait()
	if isClosed(errIn) {
		errIn = nil
	}
	if isClosed(errOut) || stopped.Load() && errors.Is(errOut, os.ErrDeadlineExceeded) {
		errOut = nil
	}
	if errOut != nil || errIn != nil || gone(errEnd) {
		errEnd = nil // the client had left: that it missed our goodbye says nothing more
	}
	return toRelay, toClient, errors.Join(errIn, errOut, errEnd)
}

// endGrace is how long a client has, once the relay has ended, to read
// the goodbye and close its side.
const endGrace = 5 * time.Second

// fromClient copies the client's stream to the relay until the client
// ends it or the read deadline Pump sets after the relay has ended passes.
// Once the relay takes no more bytes (it has exited; the supervisor logs
// how), what the client still sends is read and dropped.
func fromClient(relay, client net.Conn) (n int64, err error) {
	buf := make([]byte, pumpBuffer)
	var werr error
	for {
		m, rerr := client.Read(buf)
		if m > 0 && werr == nil {
			if _, werr = relay.Write(buf[:m]); werr == nil {
				n += int64(m)
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = nil
			}
			if gone(werr) {
				werr = nil
			}
			return n, errors.Join(rerr, werr)
		}
	}
}

// gone reports an error that means the other end has closed its socket.
func gone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENOTCONN)
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
