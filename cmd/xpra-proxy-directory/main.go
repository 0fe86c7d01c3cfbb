// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-proxy-directory is the shared directory's client
// (PostgreSQL, issue 16), exec'd by the supervisor once for its life (and
// again if it dies) as the xpra-proxy-directory user, never run by hand.
// It reads the URI from its named descriptor "directory" (the first frame
// of package pgdir's protocol), dials the database itself and answers the
// supervisor's requests on that descriptor (package pgdir/pgstore).
//
// It runs apart from the supervisor because it parses what the database
// sends (PostgreSQL's wire protocol, TLS), and under a uid of its own
// because it holds the database's password.
package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/pgdir/pgstore"
	"github.com/xpra-proxy/xpra-proxy/sandbox"
)

func main() {
	os.Exit(run())
}

func run() int {
	mode := flag.Bool("directory", false, "serve the supervisor's directory requests (the only mode; named so in ps)")
	flag.Parse()
	if !*mode {
		fmt.Fprintln(os.Stderr, "xpra-proxy-directory is started by xpra-proxy when directory-uri-file is set (--directory)")
		return 2
	}
	fds, err := child.Directory.Take()
	if err != nil {
		fmt.Fprintln(os.Stderr, "xpra-proxy-directory: start-up:", err)
		return 2
	}
	log := logging.New(nil).With("stage", "directory", "pid", os.Getpid())
	conn, err := net.FileConn(fds[pgdir.FdName])
	fds[pgdir.FdName].Close()
	if err != nil {
		log.Error("directory helper: its descriptor", "err", err)
		return 1
	}
	defer conn.Close()
	err = pgstore.Serve(context.Background(), conn, log, func(pc *pgxpool.Config) error { return confine(pc, log) })
	if err != nil {
		log.Error("directory helper", "err", err)
		return 1
	}
	return 0
}

// resolverFiles are what the pure-Go resolver reads for a database given
// by name.
var resolverFiles = []string{"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf"}

// confine applies sandbox kind "directory" before the first byte from the
// database: TCP connect to the URI's ports only (Landlock), its unix
// socket's directory if it is on one, the resolver's files read-only.
func confine(pc *pgxpool.Config, log *slog.Logger) error {
	// The system's roots are files: read them while files may be read
	// (sslmode=verify-*; crypto/x509 caches them).
	if _, err := x509.SystemCertPool(); err != nil {
		log.Debug("no system CA certificates", "err", err)
	}
	o := sandbox.Options{ReadFiles: resolverFiles}
	addr := func(host string, port uint16) {
		if strings.HasPrefix(host, "/") {
			o.ConnectUnix = filepath.Join(host, ".s.PGSQL."+strconv.Itoa(int(port)))
			return
		}
		o.ConnectTCP = append(o.ConnectTCP, port)
	}
	cc := pc.ConnConfig
	addr(cc.Host, cc.Port)
	for _, f := range cc.Fallbacks {
		addr(f.Host, f.Port)
	}
	r, err := sandbox.Apply(sandbox.Kind(child.Directory.Sandbox), o)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	// Debug: the admin command starts a helper too, and its output is the
	// admin's.
	log.Debug("sandbox applied", "kind", r.Kind, "seccomp_syscalls", r.SeccompSyscalls, "landlock_abi", r.LandlockABI,
		"landlock_err", r.LandlockErr, "connect_tcp", o.ConnectTCP, "connect_unix", o.ConnectUnix)
	return nil
}
