// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-proxy is the root supervisor of the xpra proxy: it listens
// (or takes systemd's sockets), authenticates, and starts the pre-auth and
// relay workers. It never parses what clients send.
//
//	xpra-proxy --bind-tcp=0.0.0.0:14500 --tcp-auth=sqlite,filename=/etc/xpra-proxy/users.sdb
//	xpra-proxy auth sqlite FILE create|add|remove|set|list ...
//	xpra-proxy auth postgresql URI-FILE create|add|remove|set|list ...
//	xpra-proxy list [--json]     live connections: user, source, target, transport, bytes, age
//	xpra-proxy sessions [--json] the logind sessions the proxy started, everyone's
//	xpra-proxy terminate ID      end one of them (other sessions are refused)
//	xpra-proxy --check-config    check the settings as sshd -t does
//	xpra-proxy --version, --help
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"

	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/supervisor"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
	"github.com/xpra-proxy/xpra-proxy/version"
)

const usage = `Usage:
  xpra-proxy [OPTIONS]                   run the proxy (as root; usually started by systemd)
  xpra-proxy --check-config [OPTIONS]    check the settings and exit: 0 when they are usable (also -t)
  xpra-proxy auth sqlite FILE create|add|remove|set|list ...
                                         manage a sqlite password database
  xpra-proxy auth postgresql URI-FILE create|add|remove|set|list ...
                                         the same in the shared directory (URI in a root-only file)
  xpra-proxy list [--json]               live connections: user, source, target, transport, bytes, age
  xpra-proxy sessions [--json]           the logind sessions the proxy started
  xpra-proxy terminate ID                end one of those sessions
  xpra-proxy --version                   the proxy's version and the xpra version it speaks
  xpra-proxy --help                      this text

Settings come from --config=FILE (TOML, keys named as the options) with
options given here on top. See xpra-proxy(8).

Options:
`

func main() {
	sub := ""
	if len(os.Args) > 1 {
		sub = os.Args[1]
	}
	// Subcommands read their own arguments: a user named "help" is data.
	for i, a := range os.Args[1:] {
		if i > 0 && (sub == "auth" || sub == "list" || sub == "sessions" || sub == "terminate") {
			break
		}
		switch a {
		case "-h", "-help", "--help", "help":
			fmt.Print(usage)
			supervisor.PrintFlags(os.Stdout)
			os.Exit(0)
		case "-version", "--version", "version":
			fmt.Printf("xpra-proxy %s (speaks xpra %s; %s)\n", version.Proxy, version.Protocol, runtime.Version())
			os.Exit(0)
		}
	}
	if len(os.Args) > 1 && os.Args[1] == "auth" {
		os.Exit(auth.Admin(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "list" {
		os.Exit(list(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "sessions" {
		os.Exit(sessions(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "terminate" {
		os.Exit(terminate(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	log := newLogger()
	checkOnly := false
	args = slices.DeleteFunc(slices.Clone(args), func(a string) bool {
		if a == "-t" || a == "--check-config" || a == "-check-config" {
			checkOnly = true
			return true
		}
		return false
	})
	// Inherited descriptors must not reach the workers (systemd's sockets
	// are taken by name below and are close-on-exec after that too).
	if err := namedfd.CloseOnExecAll(); err != nil {
		log.Error("start-up", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads (systemctl reload): caught from the start, since its
	// default action would end the supervisor.
	hup := make(chan os.Signal, 1)
	if !checkOnly {
		signal.Notify(hup, syscall.SIGHUP)
	}
	cfg, err := supervisor.ParseFlags(args)
	if err != nil {
		if !checkOnly && holdSockets(ctx, hup, err, log) {
			return 0
		}
		if logging.UnderJournal() {
			// An error at the journal's error priority, not bare text.
			log.Error("options", "err", err)
			return 2
		}
		fmt.Fprintln(os.Stderr, "xpra-proxy:", err)
		fmt.Fprintln(os.Stderr, "(xpra-proxy --help lists the options)")
		return 2
	}
	if checkOnly {
		if err := supervisor.Check(cfg, log); err != nil {
			log.Error("configuration", "err", err)
			if !logging.UnderJournal() { // there, the line above says it
				fmt.Fprintln(os.Stderr, "xpra-proxy: configuration:", err)
			}
			return 1
		}
		fmt.Println("xpra-proxy: configuration OK")
		return 0
	}
	if os.Geteuid() != 0 {
		log.Warn("not running as root: workers cannot switch users, only the current user's sessions are reachable")
	}
	s, err := supervisor.New(cfg, log)
	if err != nil {
		if holdSockets(ctx, hup, err, log) {
			return 0
		}
		log.Error("configuration", "err", err)
		return 1
	}
	// A reload reads the same command line again: the file it names, and
	// the options given on top.
	s.HandleReloads(hup, func() (supervisor.Config, error) { return supervisor.ParseFlags(args) })
	ls, err := supervisor.Listen(cfg)
	if err != nil {
		log.Error("listening", "err", err)
		return 1
	}
	if err := s.Serve(ctx, ls); err != nil {
		log.Error("serving", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// holdSockets is supervisor.HoldSockets, answering a reload meanwhile
// with why it cannot help: the listeners were never set up.
func holdSockets(ctx context.Context, hup <-chan os.Signal, cause error, log *slog.Logger) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Error("reload refused", "err", supervisor.ErrReloadHeld)
			}
		}
	}()
	return supervisor.HoldSockets(ctx, cause, log)
}

// newLogger logs to stderr, with the journal's priorities under systemd,
// where its audit records go to the journal with their fields.
func newLogger() *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("XPRA_PROXY_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(logging.NewStderrHandler(level, audit.Send))
	slog.SetDefault(log) // for the packages that log through slog's default
	return log
}
