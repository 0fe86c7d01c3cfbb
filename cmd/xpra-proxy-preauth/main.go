// SPDX-License-Identifier: GPL-2.0-or-later

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
// sets no_new_privs (child.Preauth); once it has read the front document,
// before its connection comes, it confines itself (package sandbox), and
// a transport narrows that further. The stage itself is package preauth.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/preauth"
	"github.com/xpra-proxy/xpra-proxy/preauth/transport"
	"github.com/xpra-proxy/xpra-proxy/sandbox"
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
	decompressedLimit := flag.Int("decompressed-limit", 0, "largest packet payload before authentication once decompressed (0: the packet limit)")
	loginTimeout := flag.Duration("login-timeout", 120*time.Second, "time for hello and challenge answer")
	firstPacket := flag.Duration("first-packet-timeout", 10*time.Second, "time for the first bytes and the hello (0: login-timeout only)")
	proxyTimeout := flag.Duration("proxy-protocol-timeout", 5*time.Second, "time for a trusted load balancer's PROXY protocol header")
	flag.Parse()
	if !*preauthMode {
		fmt.Fprintln(os.Stderr, "xpra-proxy-preauth is started by xpra-proxy (--preauth)")
		return 2
	}
	log := logging.New(nil).With("stage", "preauth", "pid", os.Getpid())
	slog.SetDefault(log) // the pre-auth HTTP server's fallback
	var optional []string
	if *listener == "tcp" {
		optional = append(optional, "front")
	}
	fds, err := child.Preauth.Take(optional...)
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
	// Confined before the connection, the first untrusted byte, comes.
	if err := confine(f, log); err != nil {
		log.Error("sandbox", "err", err)
		return 1
	}
	nc, peer, proxied, err := preauth.AwaitConnection(sup)
	if errors.Is(err, ipc.ErrClosed) {
		return 0 // the supervisor is stopping: this spare is not needed
	}
	if err != nil {
		log.Error("waiting for a connection", "err", err)
		return 1
	}
	defer nc.Close()
	if proxied {
		log = log.With("via", peer) // the client's address comes in its header
	} else {
		log = log.With("peer", peer)
	}
	if f != nil {
		f.Log = log
	}
	preauth.Serve(nc, sup, f, preauth.Options{Listener: *listener, Transport: *listener,
		Peer: peer, PacketLimit: *packetLimit, DecompressedLimit: *decompressedLimit, LoginTimeout: *loginTimeout, FirstPacketTimeout: *firstPacket, Log: log,
		Proxied: proxied, ProxyTimeout: *proxyTimeout,
		Confine: func() error {
			_, err := sandbox.Apply(sandbox.Transport, sandbox.Options{Log: log})
			return err
		}})
	return 0
}

// mimeFiles are what Go's mime package reads on Unix: the shared MIME
// database's globs, else the mime.types files.
var mimeFiles = []string{"/usr/local/share/mime/globs2", "/usr/share/mime/globs2",
	"/etc/mime.types", "/etc/apache2/mime.types", "/etc/apache/mime.types", "/etc/httpd/conf/mime.types"}

// resolverFiles are what Go's resolver reads for a tcp-proxy target
// given by name.
var resolverFiles = []string{"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/services"}

// confine applies the pre-auth sandbox (child.Preauth.Sandbox): read-only
// access to the HTML5 client and where its links lead, TCP connect to the
// tcp-proxy target's port only.
func confine(f *preauth.Front, log *slog.Logger) error {
	o := sandbox.Options{Log: log}
	if f != nil {
		if f.Doc.WWW != "" {
			o.ReadDirs = append([]string{f.Doc.WWW}, transport.DefaultLinkRoots...)
		}
		if f.Doc.TCPProxy != "" {
			host, port, err := net.SplitHostPort(f.Doc.TCPProxy)
			if err != nil {
				return fmt.Errorf("tcp-proxy %q: %w", f.Doc.TCPProxy, err)
			}
			n, err := net.LookupPort("tcp", port) // a named port: /etc/services, read now
			if err != nil {
				return fmt.Errorf("tcp-proxy %q: %w", f.Doc.TCPProxy, err)
			}
			o.ConnectTCP = []uint16{uint16(n)}
			if _, err := netip.ParseAddr(host); err != nil {
				o.ReadFiles = resolverFiles // a name, resolved per connection
			}
		}
	}
	// Go loads the system's MIME types lazily, on the first type asked
	// for that the HTML5 client does not ship (rare): its files stay
	// readable for that. Loading them up front cost every pre-auth
	// process ~5 ms of CPU (a tenth of what a refused hostile hello
	// cost), for the few that serve such a file.
	if f != nil && f.Doc.WWW != "" {
		o.ReadFiles = append(o.ReadFiles, mimeFiles...)
	}
	_, err := sandbox.Apply(sandbox.Kind(child.Preauth.Sandbox), o)
	return err
}
