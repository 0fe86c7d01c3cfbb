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
// carry TLS termination, the certificate and key, and the HTTP server (the
// relay still links net/http and crypto/tls through two libraries:
// ARCHITECTURE.md, "What each binary links").
//
// Before anything else it checks it holds only its named descriptors and
// sets no_new_privs. The stage itself is package preauth.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/preauth"
)

// The parent-death signal the supervisor sets belongs to the thread exec
// started, the main one: only there can run clear it, so main runs on it.
func init() { runtime.LockOSThread() }

func main() {
	os.Exit(run())
}

func run() int {
	preauthMode := flag.Bool("preauth", false, "run the pre-auth stage (the only mode; named so in ps)")
	listener := flag.String("listener", "tcp", "listener type the client comes in on")
	packetLimit := flag.Int("packet-limit", 1<<20, "largest packet before authentication")
	loginTimeout := flag.Duration("login-timeout", 120*time.Second, "time for hello and challenge answer")
	firstPacket := flag.Duration("first-packet-timeout", 10*time.Second, "time for the first bytes and the hello (0: login-timeout only)")
	flag.Parse()
	if !*preauthMode {
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
	sup, err := ipc.FromFile(fds["ipc"])
	fds["ipc"].Close()
	if err != nil {
		log.Error("ipc", "err", err)
		return 1
	}
	defer sup.Close()
	// What does not depend on the connection is done before it comes.
	var f *preauth.Front
	if doc := fds["front"]; doc != nil {
		if f, err = preauth.ReadFront(doc, log); err != nil {
			log.Error("front", "err", err)
			return 1
		}
	}
	nc, peer, err := preauth.AwaitConnection(sup)
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
	preauth.Serve(nc, sup, f, preauth.Options{Listener: *listener, Transport: *listener,
		Peer: peer, PacketLimit: *packetLimit, LoginTimeout: *loginTimeout, FirstPacketTimeout: *firstPacket, Log: log})
	return 0
}
