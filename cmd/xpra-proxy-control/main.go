// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-proxy-control is exec'd by the supervisor, never run by
// hand: it serves the supervisor's own control socket (display :proxy,
// `xpra info` and `xpra stop` for root) as the xpra-proxy-control user,
// asking the supervisor over ipc for its figures or to stop. Fds:
// control (the listening socket root bound), ipc.
//
// It reads requests, so it is confined like a pre-auth process (package
// sandbox: non-dumpable, Landlock with no file access, the control
// seccomp filter), under a uid of its own so that a compromised pre-auth
// process cannot reach it. It is a binary of its own, not a mode of the
// relay worker, so that relays do not carry the sandbox's code: the
// seccomp library's system call tables cost every process that links it
// about 1 ms and 165 KB at start-up (BENCHMARKS.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/control/proxyctl"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/sandbox"
)

func main() {
	os.Exit(run())
}

func run() int {
	controlMode := flag.Bool("control", false, "serve the supervisor's control socket (the only mode; named so in ps)")
	flag.Parse()
	if !*controlMode {
		fmt.Fprintln(os.Stderr, "xpra-proxy-control is started by xpra-proxy (--control)")
		return 2
	}
	log := logging.New(nil).With("stage", "control", "pid", os.Getpid())
	fds, err := child.Control.Take()
	if err != nil {
		log.Error("start-up", "err", err)
		return 1
	}
	l, err := net.FileListener(fds["control"])
	fds["control"].Close()
	if err != nil {
		log.Error("control socket", "err", err)
		return 1
	}
	sup, err := ipc.FromFile(fds["ipc"])
	fds["ipc"].Close()
	if err != nil {
		log.Error("ipc", "err", err)
		return 1
	}
	defer sup.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Before the first request: whoever reaches the :proxy socket (root
	// only, by its mode) is still untrusted input to this process.
	if _, err := sandbox.Apply(sandbox.Kind(child.Control.Sandbox), sandbox.Options{Log: log}); err != nil {
		log.Error("sandbox", "err", err)
		return 1
	}
	if err := proxyctl.ServeSupervisor(ctx, l, sup, log); err != nil {
		log.Warn("control socket", "err", err)
	}
	return 0
}
