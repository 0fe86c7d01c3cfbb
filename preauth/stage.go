// SPDX-License-Identifier: GPL-2.0-or-later

package preauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/preauth/transport"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
)

// ReadFront reads and closes the front document and prepares the front
// (the TLS configuration) from it.
func ReadFront(doc *os.File, log *slog.Logger) (*Front, error) {
	d, err := launch.ReadFront(doc)
	doc.Close()
	if err != nil {
		return nil, err
	}
	return NewFront(d, log)
}

// AwaitConnection waits for the supervisor to hand over the accepted
// connection: the one message a spare expects, with the socket attached.
// It returns the peer's address and whether the peer is a trusted load
// balancer whose PROXY protocol header comes first.
func AwaitConnection(sup *ipc.Conn) (nc net.Conn, peer string, proxied bool, err error) {
	m, f, _, err := sup.Recv()
	if err != nil {
		return nil, "", false, err
	}
	if f == nil {
		return nil, "", false, fmt.Errorf("supervisor sent %q without a connection", m.Kind)
	}
	defer f.Close()
	if m.Kind != ipc.Connection {
		return nil, "", false, fmt.Errorf("supervisor sent %q, want %q", m.Kind, ipc.Connection)
	}
	if nc, err = net.FileConn(f); err != nil {
		return nil, "", false, fmt.Errorf("client connection: %w", err)
	}
	return nc, m.Peer, m.Proxied, nil
}

// Serve runs the front (TCP ports, f non-nil), the login exchange, and,
// for TLS and WebSocket, carries the connection for the relay worker.
// What it ends with is logged: the connection is the process's only one.
func Serve(nc net.Conn, sup *ipc.Conn, f *Front, o Options) {
	if o.FirstPacketTimeout > 0 {
		o.FirstPacketDeadline = time.Now().Add(o.FirstPacketTimeout)
	}
	if o.Proxied {
		// Before anything else on the port: the header comes ahead of
		// TLS, HTTP and xpra alike.
		if err := takeProxyHeader(nc, sup, &o); err != nil {
			if errors.Is(err, errSourceRefused) || errors.Is(err, errClosedSilently) {
				o.Log.Info("connection ended before authentication", "err", err)
			} else {
				o.Log.Warn("PROXY protocol header from a trusted peer refused", "err", err)
			}
			if herr := transport.Hangup(nc, refuseLinger); herr != nil {
				o.Log.Debug("hanging up", "err", herr)
			}
			return
		}
		if f != nil {
			f.Log = o.Log
		}
	}
	log := o.Log
	if o.FirstPacketTimeout > 0 {
		if err := AwaitFirstBytes(nc, o.FirstPacketDeadline); err != nil {
			log.Info("connection ended before authentication", "err",
				fmt.Errorf("nothing received within first-packet-timeout (%s): %w", o.FirstPacketTimeout, err))
			// A silent peer is taken for an xpra client (see Front.Accept):
			// it is told why, as a login timeout would tell it.
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			_ = conn.New(nc).WritePacket(packet.NewDisconnect(packet.ReasonLoginTimeout, "nothing received"))
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.LoginTimeout)
	defer cancel()
	o.Deadline, _ = ctx.Deadline()
	c := nc
	if f != nil {
		var err error
		if c, o.Transport, err = f.Accept(ctx, nc); err != nil || c == nil {
			if err != nil {
				log.Info("connection ended before authentication", "err", err)
			}
			return
		}
		log = log.With("transport", o.Transport)
		o.Log = log
	}
	stream, handedOver, err := Login(c, sup, o)
	if !handedOver {
		// A version request answered, a refusal, a client gone: end the
		// transport cleanly (close frame, close_notify, FIN), never by
		// just closing the socket. (A plain connection handed over is the
		// relay's: a shutdown here would end it.)
		if herr := transport.Hangup(c, hangupLinger); herr != nil {
			log.Debug("hanging up", "err", herr)
		}
	}
	if err != nil {
		log.Info("connection ended before authentication", "err", err)
		return
	}
	if stream == nil {
		return
	}
	// This process now carries an authenticated connection: it must
	// outlive a restart of the supervisor, like the relay worker.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0); err != nil {
		log.Warn("clearing the parent-death signal", "err", err)
	}
	if o.Confine != nil {
		if err := o.Confine(); err != nil {
			stream.Close()
			log.Error("confining the transport", "err", err)
			return
		}
	}
	in, out, err := Pump(c, stream, carryGoodbyeOnTerm(log))
	if herr := transport.Hangup(c, hangupLinger); herr != nil {
		log.Debug("hanging up", "err", herr)
	}
	log.Info("connection ended", "to_relay", in, "to_client", out, "err", err)
}

// carryGoodbyeOnTerm keeps SIGTERM from ending the transport at once:
// `systemctl kill` (the package's removal) signals it and its relay
// together, and the relay's goodbye ("server shutdown") still has to pass
// through here; dying first left TLS and WebSocket clients with "Connection
// lost". The relay ending the stream ends the pump as always; the returned
// channel closes termGrace after a SIGTERM, for a relay that does not.
func carryGoodbyeOnTerm(log *slog.Logger) <-chan struct{} {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	stop := make(chan struct{})
	go func() {
		<-term
		log.Info("SIGTERM: waiting for the relay to end the connection", "grace", termGrace)
		time.Sleep(termGrace)
		close(stop)
	}()
	return stop
}

// termGrace is how long a transport waits after SIGTERM for its relay's
// goodbye: the relay, signalled at the same time, sends it at once.
const termGrace = 5 * time.Second

// hangupLinger is how long a client has to close its side once ours is
// closed, before the socket is closed under it.
const hangupLinger = time.Second
