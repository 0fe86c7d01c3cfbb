// Command xpra-proxy-preauth is exec'd by the supervisor for every new
// connection, never run by hand, as the xpra-proxy user (else nobody):
// it tells transports apart on TCP ports, serves the HTML5 client, reads
// the client's hello, relays the password challenge, hands the connection
// over, and stays to carry TLS and WebSocket connections for the relay
// worker. Fds: client, ipc, and front on TCP ports.
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
	listener := flag.String("listener", "tcp", "listener type the client came in on")
	peer := flag.String("peer", "", "client address, for logs")
	packetLimit := flag.Int("packet-limit", 1<<20, "largest packet before authentication")
	loginTimeout := flag.Duration("login-timeout", 120*time.Second, "time for hello and challenge answer")
	flag.Parse()
	if !*preauth {
		fmt.Fprintln(os.Stderr, "xpra-proxy-preauth is started by xpra-proxy (--preauth)")
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("stage", "preauth", "peer", *peer, "pid", os.Getpid())
	names := []string{"client", "ipc"}
	if *listener == "tcp" {
		names = append(names, "front")
	}
	fds, err := namedfd.Take(names...)
	if err != nil {
		log.Error("start-up", "err", err)
		return 1
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		log.Error("no_new_privs", "err", err)
		return 1
	}
	if os.Geteuid() == 0 {
		log.Error("refusing to run as root")
		return 1
	}
	nc, err := net.FileConn(fds["client"])
	fds["client"].Close()
	if err != nil {
		log.Error("client connection", "err", err)
		return 1
	}
	defer nc.Close()
	sup, err := ipc.FromFile(fds["ipc"])
	fds["ipc"].Close()
	if err != nil {
		log.Error("ipc", "err", err)
		return 1
	}
	defer sup.Close()
	return preauthStage(nc, sup, fds["front"], worker.PreauthOptions{Listener: *listener, Transport: *listener,
		Peer: *peer, PacketLimit: *packetLimit, LoginTimeout: *loginTimeout, Log: log})
}

// preauthStage runs the front (TCP ports), the pre-auth exchange, and, for
// TLS and WebSocket, carries the connection for the relay worker.
func preauthStage(nc net.Conn, sup *ipc.Conn, frontDoc *os.File, o worker.PreauthOptions) int {
	log := o.Log
	ctx, cancel := context.WithTimeout(context.Background(), o.LoginTimeout)
	defer cancel()
	c := nc
	if frontDoc != nil {
		doc, err := launch.ReadFront(frontDoc)
		frontDoc.Close()
		if err != nil {
			log.Error("front", "err", err)
			return 1
		}
		f, err := front.New(doc, log)
		if err != nil {
			log.Error("front", "err", err)
			return 1
		}
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
