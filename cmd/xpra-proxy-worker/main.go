// Command xpra-proxy-worker is exec'd by the supervisor, never run by
// hand. It runs unprivileged in one of two modes:
//
//	--preauth  as the xpra-proxy user: reads the client's hello, relays the
//	           password challenge, hands the connection over (fds: client, ipc)
//	--relay    as the session's owner: connects to the session and relays
//	           (fds: client, handover, launch)
//
// Before anything else it checks it holds only its named descriptors and
// sets no_new_privs, so nothing it runs can gain privileges.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/worker"
)

func main() {
	os.Exit(run())
}

func run() int {
	preauth := flag.Bool("preauth", false, "run the pre-auth stage")
	relay := flag.Bool("relay", false, "run the relay stage")
	listener := flag.String("listener", "tcp", "listener type the client came in on")
	peer := flag.String("peer", "", "client address, for logs")
	packetLimit := flag.Int("packet-limit", 1<<20, "largest packet before authentication")
	loginTimeout := flag.Duration("login-timeout", 120*time.Second, "time for hello and challenge answer")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var names []string
	switch {
	case *preauth && !*relay:
		names = []string{"client", "ipc"}
		log = log.With("stage", "preauth", "peer", *peer, "pid", os.Getpid())
	case *relay && !*preauth:
		names = []string{"client", "handover", "launch"}
		log = log.With("stage", "relay", "peer", *peer, "pid", os.Getpid())
	default:
		fmt.Fprintln(os.Stderr, "xpra-proxy-worker is started by xpra-proxy (--preauth or --relay)")
		return 2
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

	if *preauth {
		sup, err := ipc.FromFile(fds["ipc"])
		fds["ipc"].Close()
		if err != nil {
			log.Error("ipc", "err", err)
			return 1
		}
		defer sup.Close()
		err = worker.Preauth(nc, sup, worker.PreauthOptions{Listener: *listener, Peer: *peer,
			PacketLimit: *packetLimit, LoginTimeout: *loginTimeout, Log: log})
		if err != nil {
			log.Info("connection ended before authentication", "err", err)
		}
		return 0
	}

	blob, err := launch.ReadAll(fds["handover"], handover.MaxSize)
	fds["handover"].Close()
	if err != nil {
		log.Error("handover", "err", err)
		return 1
	}
	st, err := handover.Unmarshal(blob)
	if err != nil {
		log.Error("handover", "err", err)
		return 1
	}
	l, err := launch.Read(fds["launch"])
	fds["launch"].Close()
	if err != nil {
		log.Error("launch", "err", err)
		return 1
	}
	log = log.With("user", l.Username)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s := &worker.Session{State: st, Launch: l, Log: log}
	if err := s.Run(ctx, nc); err != nil {
		log.Info("connection ended", "err", err)
	}
	return 0
}
