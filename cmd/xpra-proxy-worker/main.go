// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-proxy-worker is exec'd by the supervisor, never run by
// hand. It runs unprivileged in one of these modes (the pre-auth stage is
// xpra-proxy-preauth, the :proxy control process xpra-proxy-control):
//
//	--relay    as the session's owner: connects to the session and relays
//	           (fds: client, handover, launch, and with --start-session the
//	           session channel to ask the supervisor for a new session, with
//	           --report the channel to report the relay's end on)
//	--relay --early
//	           the same, exec'd ahead of its login (a warm relay): fd
//	           start instead of the first three, which come on it once a
//	           login is granted its identity (ipc.RelayFile)
//	--query    as a connection's user, for xpra-proxy list (no fds)
//
// Before anything else it checks it holds only its named descriptors and
// sets no_new_privs, so nothing it runs can gain privileges.
package main

import (
	"context"
	"encoding/json"
	"errors"
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
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/control/proxyctl"
	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/internal/timeline"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/worker"
)

func init() {
	// main then runs on the main thread, whose name is the process's
	// (a warm relay renames it while it waits); run unlocks it.
	runtime.LockOSThread()
}

func main() {
	os.Exit(run())
}

// setComm names the main thread, and so the process.
func setComm(name string) error {
	b := append([]byte(name), 0)
	return unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0)
}

func run() int {
	relay := flag.Bool("relay", false, "run the relay stage")
	early := flag.Bool("early", false, "with --relay: exec'd ahead of its login; wait for the client, handover and launch descriptors on the start fd")
	_ = flag.String("listener", "tcp", "listener type the client came in on (for ps and logs)")
	peer := flag.String("peer", "", "client address, for logs")
	_ = flag.String("transport", "", "what arrived (tcp, ssl, ws, wss, unix): shown by xpra-proxy list")
	query := flag.String("query", "", "print the info of the relay worker with this pid as JSON (xpra-proxy list)")
	socketDirs := flag.String("socket-dirs", "", "with --query: where control sockets are, comma separated")
	startSession := flag.String("start-session", "", "with --relay: the supervisor starts sessions (on-request or auto) over the session fd")
	rootControl := flag.Bool("root-control", false, "with --relay: serve root's :proxy-PID socket, bound by the supervisor, on the rootcontrol fd")
	report := flag.Bool("report", false, "with --relay: report the relay's end to the supervisor on the report fd")
	setupStart := flag.Int64("setup-start", 0, "with --relay: the connection's accept time (Unix ns), given by a supervisor at debug level: log the setup's stages from it")
	flag.Parse()

	log := logging.New(nil)
	slog.SetDefault(log) // the encoder client's default
	if *query != "" {
		return queryStage(*query, *socketDirs)
	}
	if !*relay {
		fmt.Fprintln(os.Stderr, "xpra-proxy-worker is started by xpra-proxy (--relay)")
		return 2
	}
	var optional []string
	if *startSession != "" {
		optional = append(optional, "session")
	}
	if *rootControl {
		optional = append(optional, "rootcontrol")
	}
	if *report {
		optional = append(optional, "report")
	}
	log = log.With("stage", "relay", "pid", os.Getpid())
	if !*early {
		log = log.With("peer", *peer)
	}
	var tl *timeline.Timeline
	if *setupStart > 0 {
		tl = timeline.At(time.Unix(0, *setupStart))
		tl.Mark("relay_main")
	}
	spec := &child.Relay
	if *early {
		spec = &child.EarlyRelay
	}
	fds, err := spec.Take(optional...)
	if err != nil {
		log.Error("start-up", "err", err)
		return 1
	}
	// The session's user's other processes must not read it (the rest of
	// the sandbox would gain nothing: it runs as that user). Not through
	// package sandbox, whose seccomp tables would cost every relay start.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		log.Error("start-up: PR_SET_DUMPABLE", "err", err)
		return 1
	}
	// Every signal that ends a relay ends it through ctx, so that its
	// control socket is removed (SIGHUP's default would kill it on the
	// spot). A broken log pipe must not kill it either: SIGPIPE for
	// stderr is ignored, the write just fails.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	var goAt time.Time
	if *early {
		// Started ahead of its login (a warm relay): wait for one.
		own, _ := os.ReadFile("/proc/thread-self/comm")
		if err := setComm(child.WaitingComm); err != nil {
			log.Warn("naming the waiting relay", "err", err)
		}
		if err := waitForFiles(ctx, fds); err != nil {
			if errors.Is(err, ipc.ErrClosed) {
				return 0 // not needed any more, or the supervisor ended
			}
			log.Error("start channel", "err", err)
			return 1
		}
		goAt = time.Now()
		if err := setComm(strings.TrimSpace(string(own))); err != nil {
			log.Warn("naming the relay", "err", err)
		}
	}
	runtime.UnlockOSThread()
	nc, err := net.FileConn(fds["client"])
	fds["client"].Close()
	if err != nil {
		log.Error("client connection", "err", err)
		return 1
	}
	defer nc.Close()

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
	if *early {
		log = log.With("peer", l.Peer)
		if l.SetupStart > 0 {
			tl = timeline.At(time.Unix(0, l.SetupStart))
			tl.MarkAt("relay_go", goAt)
		}
	}
	tl.Mark("relay_read")
	s := &worker.Session{State: st, Launch: l, Log: log, StartMode: *startSession, Timeline: tl}
	if f := fds["session"]; f != nil {
		s.Sessions, err = ipc.FromFile(f)
		f.Close()
		if err != nil {
			log.Error("session channel", "err", err)
			return 1
		}
	}
	if f := fds["rootcontrol"]; f != nil {
		s.RootControl, err = net.FileListener(f)
		f.Close()
		if err != nil {
			// The user's own socket still works: root's is a convenience.
			log.Warn("root control socket", "err", err)
		}
	}
	err = s.Run(ctx, nc)
	if err != nil {
		log.Info("connection ended", "err", err)
	}
	if f := fds["report"]; f != nil {
		// For the supervisor's audit record: only this process counts
		// the bytes.
		if rc, rerr := ipc.FromFile(f); rerr != nil {
			log.Warn("report channel", "err", rerr)
		} else if rerr := rc.Send(s.Ended(err), nil); rerr != nil {
			log.Warn("reporting the relay's end", "err", rerr)
		}
		f.Close()
	}
	return 0
}

// waitForFiles takes the client, handover and launch descriptors an
// early relay is given on its start channel into fds.
// A signal ends the wait as if the channel had closed.
func waitForFiles(ctx context.Context, fds map[string]*os.File) error {
	start, err := ipc.FromFile(fds["start"])
	fds["start"].Close()
	delete(fds, "start")
	if err != nil {
		return err
	}
	defer start.Close()
	stop := context.AfterFunc(ctx, func() { start.Close() })
	defer stop()
	files, err := start.RecvRelayFiles()
	if ctx.Err() != nil {
		for _, f := range files {
			f.Close()
		}
		return ipc.ErrClosed
	}
	if err != nil {
		return err
	}
	for name, f := range files {
		fds[name] = f
	}
	return nil
}

// queryStage asks a relay worker's control socket for its info and prints
// it as JSON. xpra-proxy list runs it as the connection's user, so root
// never parses what a user's process answers.
func queryStage(pid, dirs string) int {
	if _, err := child.Query.Take(); err != nil {
		fmt.Fprintln(os.Stderr, "xpra-proxy-worker --query:", err)
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
	info, err := proxyctl.QueryConnection(ctx, list, n)
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
