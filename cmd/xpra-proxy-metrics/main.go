// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-proxy-metrics is exec'd by the supervisor, never run by
// hand: it serves Prometheus's scrapes on the metrics-bind socket (or
// systemd's xpra-proxy-metrics.socket) that root bound, from the
// supervisor's counters, which it asks for over ipc (package metrics).
// Fds: metrics (the listening socket), ipc. With --encoder-socket it also
// asks the shared encoder for its counters (encproto Stats), as a peer
// the encoder admits for that alone (its --stats-users).
//
// It reads HTTP requests from the network, so root never does: it runs
// as the control process's user, confined as the control process is
// (package sandbox: non-dumpable, Landlock with no file access, the
// control seccomp filter), and it is a binary of its own so that no
// other process links net/http's server or client_golang for it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/metrics"
	"github.com/xpra-proxy/xpra-proxy/sandbox"
	"github.com/xpra-proxy/xpra-proxy/stats"
)

func main() {
	os.Exit(run())
}

func run() int {
	mode := flag.Bool("metrics", false, "serve Prometheus metrics (the only mode; named so in ps)")
	encSocket := flag.String("encoder-socket", "", "the shared encoder's socket, asked for its counters (empty: no encoder metrics)")
	encUID := flag.Int("encoder-uid", -1, "the uid the encoder must run as (-1: unknown, so reported down)")
	flag.Parse()
	if !*mode {
		fmt.Fprintln(os.Stderr, "xpra-proxy-metrics is started by xpra-proxy (--metrics), when metrics-bind is set")
		return 2
	}
	log := logging.New(nil).With("stage", "metrics", "pid", os.Getpid())
	fds, err := child.Metrics.Take()
	if err != nil {
		log.Error("start-up", "err", err)
		return 1
	}
	l, err := net.FileListener(fds["metrics"])
	fds["metrics"].Close()
	if err != nil {
		log.Error("metrics socket", "err", err)
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
	// Before the first request: anyone who reaches the port is untrusted.
	if _, err := sandbox.Apply(sandbox.Kind(child.Metrics.Sandbox), sandbox.Options{ConnectUnix: *encSocket, Log: log}); err != nil {
		log.Error("sandbox", "err", err)
		return 1
	}
	asker := &metrics.Asker{Conn: sup, MinInterval: time.Second}
	src := func() (stats.Snapshot, error) {
		sn, err := asker.Snapshot()
		if errors.Is(err, ipc.ErrClosed) {
			// The supervisor is gone: so are its counters. It starts a
			// new metrics process when it comes back.
			log.Info("supervisor gone; exiting")
			stop()
		}
		return sn, err
	}
	var enc metrics.EncoderSource
	if *encSocket != "" {
		enc = (&metrics.EncoderAsker{Path: *encSocket, UID: *encUID, MinInterval: time.Second}).Stats
	}
	if err := metrics.Serve(ctx, l, src, enc, log); err != nil {
		log.Warn("metrics", "err", err)
		return 1
	}
	return 0
}
