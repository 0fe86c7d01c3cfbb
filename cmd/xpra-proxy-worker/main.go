// Command xpra-proxy-worker is exec'd by the supervisor, never run by
// hand. It runs unprivileged in one of two modes:
//
//	--preauth  as the xpra-proxy user: tells transports apart (TCP ports),
//	           serves the HTML5 client, reads the client's hello, relays the
//	           password challenge, hands the connection over, and stays to
//	           carry TLS and WebSocket connections (fds: client, ipc, and
//	           front on TCP ports)
//	--relay    as the session's owner: connects to the session and relays
//	           (fds: client, handover, launch, and with --start-session the
//	           session channel to ask the supervisor for a new session)
//
// Before anything else it checks it holds only its named descriptors and
// sets no_new_privs, so nothing it runs can gain privileges.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/worker"
)

// The parent-death signal the supervisor sets on pre-auth processes
// belongs to the thread exec started, the main one: only there can
// preauthStage clear it, so main runs on it.
func init() { runtime.LockOSThread() }

func main() {
	os.Exit(run())
}

func run() int {
	preauth := flag.Bool("preauth", false, "run the pre-auth stage")
	relay := flag.Bool("relay", false, "run the relay stage")
	controlMode := flag.Bool("control", false, "serve the supervisor's control socket")
	listener := flag.String("listener", "tcp", "listener type the client came in on")
	peer := flag.String("peer", "", "client address, for logs")
	_ = flag.String("transport", "", "what arrived (tcp, ssl, ws, wss, unix): shown by xpra-proxy list")
	query := flag.String("query", "", "print the info of the relay worker with this pid as JSON (xpra-proxy list)")
	socketDirs := flag.String("socket-dirs", "", "with --query: where control sockets are, comma separated")
	packetLimit := flag.Int("packet-limit", 1<<20, "largest packet before authentication")
	loginTimeout := flag.Duration("login-timeout", 120*time.Second, "time for hello and challenge answer")
	startSession := flag.String("start-session", "", "with --relay: the supervisor starts sessions (on-request or auto) over the session fd")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *query != "" {
		return queryStage(*query, *socketDirs)
	}
	var names []string
	switch {
	case *controlMode && !*preauth && !*relay:
		names = []string{"control", "ipc"}
		log = log.With("stage", "control", "pid", os.Getpid())
	case *preauth && !*relay:
		names = []string{"client", "ipc"}
		if *listener == "tcp" {
			names = append(names, "front")
		}
		log = log.With("stage", "preauth", "peer", *peer, "pid", os.Getpid())
	case *relay && !*preauth:
		names = []string{"client", "handover", "launch"}
		if *startSession != "" {
			names = append(names, "session")
		}
		log = log.With("stage", "relay", "peer", *peer, "pid", os.Getpid())
	default:
		fmt.Fprintln(os.Stderr, "xpra-proxy-worker is started by xpra-proxy (--preauth, --relay or --control)")
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
	if *controlMode {
		return controlStage(fds["control"], fds["ipc"], log)
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
		return preauthStage(nc, sup, fds["front"], worker.PreauthOptions{Listener: *listener, Transport: *listener,
			Peer: *peer, PacketLimit: *packetLimit, LoginTimeout: *loginTimeout, Log: log})
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
	s := &worker.Session{State: st, Launch: l, Log: log, StartMode: *startSession}
	if f := fds["session"]; f != nil {
		s.Sessions, err = ipc.FromFile(f)
		f.Close()
		if err != nil {
			log.Error("session channel", "err", err)
			return 1
		}
	}
	if err := s.Run(ctx, nc); err != nil {
		log.Info("connection ended", "err", err)
	}
	return 0
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
		f, err := worker.NewFront(doc, log)
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
	in, out, err := worker.Pump(c, stream)
	log.Info("connection ended", "to_relay", in, "to_client", out, "err", err)
	return 0
}

// queryStage asks a relay worker's control socket for its info and prints
// it as JSON. xpra-proxy list runs it as the connection's user, so root
// never parses what a user's process answers.
func queryStage(pid, dirs string) int {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil || os.Geteuid() == 0 {
		fmt.Fprintln(os.Stderr, "xpra-proxy-worker --query runs unprivileged")
		return 1
	}
	n, err := strconv.Atoi(pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "--query wants a pid")
		return 2
	}
	var list []string
	if dirs != "" {
		list = strings.Split(dirs, ",")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := worker.QueryConnection(ctx, list, n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// controlStage serves the supervisor's control socket until it is told to
// stop or the supervisor goes away.
func controlStage(lf, ipcf *os.File, log *slog.Logger) int {
	l, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		log.Error("control socket", "err", err)
		return 1
	}
	sup, err := ipc.FromFile(ipcf)
	ipcf.Close()
	if err != nil {
		log.Error("ipc", "err", err)
		return 1
	}
	defer sup.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := worker.ServeSupervisorControl(ctx, l, sup, log); err != nil {
		log.Warn("control socket", "err", err)
	}
	return 0
}
