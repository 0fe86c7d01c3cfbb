// Command xpra-proxy-preauth is exec'd by the supervisor, never run by
// hand, as the xpra-proxy user (else nobody): it tells transports apart
// on TCP ports, serves the HTML5 client, reads the client's hello,
// relays the password challenge, hands the connection over, and stays to
// carry TLS and WebSocket connections for the relay worker. Fds: ipc,
// and front on TCP ports.
//
// It is started ahead of its connection, as a warm spare: exec, the Go
// runtime's start-up and reading the front document (TLS certificate and
// key) are done before a client waits on them. The supervisor then hands
// it the accepted connection over ipc (ipc.Connection, the socket
// attached) and starts the next spare.
//
// It is its own binary so that relay workers, one per connection, do not
// carry net/http and crypto/tls (about 3 MB of RSS each, from their
// package initialisation alone).
//
// Before anything else it checks it holds only its named descriptors and
// sets no_new_privs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/front"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/memlimit"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/worker"
)

// The parent-death signal the supervisor sets belongs to the thread exec
// started, the main one: only there can run clear it, so main runs on it.
func init() { runtime.LockOSThread() }

func main() {
	os.Exit(run())
}

func run() int {
	preauth := flag.Bool("preauth", false, "run the pre-auth stage (the only mode; named so in ps)")
	listener := flag.String("listener", "tcp", "listener type the client comes in on")
	packetLimit := flag.Int("packet-limit", 1<<20, "largest packet before authentication")
	loginTimeout := flag.Duration("login-timeout", 120*time.Second, "time for hello and challenge answer")
	flag.Parse()
	if !*preauth {
		fmt.Fprintln(os.Stderr, "xpra-proxy-preauth is started by xpra-proxy (--preauth)")
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("stage", "preauth", "pid", os.Getpid())
	names := []string{"ipc"}
	if *listener == "tcp" {
		names = append(names, "front")
	}
	fds, err := namedfd.TakeUnprivileged(names...)
	if err != nil {
		log.Error("start-up", "err", err)
		return 1
	}
	if _, err := memlimit.Apply(memlimit.Preauth); err != nil { // before any client byte
		log.Error("start-up", "err", err)
		return 1
	}
	sup, err := ipc.FromFile(fds["ipc"])
	fds["ipc"].Close()
	if err != nil {
		log.Error("ipc", "err", err)
		return 1
	}
	defer sup.Close()
	// What does not depend on the connection is done before it comes.
	var f *front.Front
	if doc := fds["front"]; doc != nil {
		if f, err = readFront(doc, log); err != nil {
			log.Error("front", "err", err)
			return 1
		}
	}
	nc, peer, err := awaitConnection(sup)
	if errors.Is(err, ipc.ErrClosed) {
		return 0 // the supervisor is stopping: this spare is not needed
	}
	if err != nil {
		log.Error("waiting for a connection", "err", err)
		return 1
	}
	defer nc.Close()
	log = log.With("peer", peer)
	if f != nil {
		f.Log = log
	}
	return preauthStage(nc, sup, f, worker.PreauthOptions{Listener: *listener, Transport: *listener,
		Peer: peer, PacketLimit: *packetLimit, LoginTimeout: *loginTimeout, Log: log})
}

// readFront reads and closes the front document and prepares the front
// (the TLS configuration) from it.
func readFront(doc *os.File, log *slog.Logger) (*front.Front, error) {
	d, err := launch.ReadFront(doc)
	doc.Close()
	if err != nil {
		return nil, err
	}
	return front.New(d, log)
}

// awaitConnection waits for the supervisor to hand over the accepted
// connection: the one message a spare expects, with the socket attached.
func awaitConnection(sup *ipc.Conn) (net.Conn, string, error) {
	m, f, _, err := sup.Recv()
	if err != nil {
		return nil, "", err
	}
	if f == nil {
		return nil, "", fmt.Errorf("supervisor sent %q without a connection", m.Kind)
	}
	defer f.Close()
	if m.Kind != ipc.Connection {
		return nil, "", fmt.Errorf("supervisor sent %q, want %q", m.Kind, ipc.Connection)
	}
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, "", fmt.Errorf("client connection: %w", err)
	}
	return nc, m.Peer, nil
}

// preauthStage runs the front (TCP ports), the pre-auth exchange, and, for
// TLS and WebSocket, carries the connection for the relay worker.
func preauthStage(nc net.Conn, sup *ipc.Conn, f *front.Front, o worker.PreauthOptions) int {
	log := o.Log
	ctx, cancel := context.WithTimeout(context.Background(), o.LoginTimeout)
	defer cancel()
	c := nc
	if f != nil {
		var err error
		if c, o.Transport, err = f.Accept(ctx, nc); err != nil || c == nil {
			if err != nil {
				log.Info("connection ended before authentication", "err", err)
			}
			return 0
		}
		log = log.With("transport", o.Transport)
		o.Log = log
	}
	stream, err := worker.Preauth(c, sup, o)
	if err != nil {
		log.Info("connection ended before authentication", "err", err)
		return 0
	}
	if stream == nil {
		return 0
	}
	// This process now carries an authenticated connection: it must
	// outlive a restart of the supervisor, like the relay worker.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0); err != nil {
		log.Warn("clearing the parent-death signal", "err", err)
	}
	in, out, err := front.Pump(c, stream)
	log.Info("connection ended", "to_relay", in, "to_client", out, "err", err)
	return 0
}
