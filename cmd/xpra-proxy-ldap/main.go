// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-proxy-ldap is exec'd by the supervisor once per LDAP login
// attempt, as the xpra-proxy-ldap user, never run by hand. It reads one
// request from its named descriptor "ldap", checks the password against
// the directory on its descriptor "directory" (a TCP connection the
// supervisor opened), writes one reply and exits (protocol: package
// ldapauth).
//
// It runs apart from the supervisor because it parses what the directory
// sends (TLS, BER), and under a uid of its own because it holds a
// password: a compromised pre-auth process must not be able to reach it.
package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ldapauth"
	"github.com/xpra-proxy/xpra-proxy/ldapauth/ldapcheck"
	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/sandbox"
)

func main() {
	os.Exit(run())
}

func run() int {
	mode := flag.Bool("ldap", false, "check one LDAP login (the only mode; named so in ps)")
	flag.Parse()
	if !*mode {
		fmt.Fprintln(os.Stderr, "xpra-proxy-ldap is started by xpra-proxy for each LDAP login (--ldap)")
		return 2
	}
	fds, err := child.LDAP.Take()
	if err != nil {
		fmt.Fprintln(os.Stderr, "xpra-proxy-ldap: start-up:", err)
		return 2
	}
	log := logging.New(nil).With("stage", "ldap", "pid", os.Getpid())
	c, err := ldapauth.NewConn(fds[ldapauth.FdName])
	fds[ldapauth.FdName].Close()
	if err != nil {
		log.Error("ldap helper", "err", err)
		return 1
	}
	defer c.Close()
	dir, err := net.FileConn(fds[ldapauth.DirectoryFd])
	fds[ldapauth.DirectoryFd].Close()
	if err != nil {
		log.Error("ldap helper: the directory connection", "err", err)
		return 1
	}
	defer dir.Close()
	req, err := c.RecvRequest()
	if err != nil {
		log.Error("ldap helper", "err", err)
		return 1
	}
	defer clear(req.Password)
	// The system's roots are files: read them while files may be read.
	var roots *x509.CertPool
	if len(req.CAPEM) == 0 {
		if roots, err = x509.SystemCertPool(); err != nil {
			log.Error("ldap helper: the system's CA certificates", "err", err)
			return 1
		}
	}
	// Before the first byte from the directory: no file, no new socket,
	// only the runtime's system calls (sandbox kind "ldap").
	if _, err := sandbox.Apply(sandbox.Kind(child.LDAP.Sandbox), sandbox.Options{}); err != nil {
		log.Error("sandbox", "err", err)
		return 1
	}
	reply := ldapcheck.Check(context.Background(), dir, req, roots)
	if err := c.SendReply(reply); err != nil {
		log.Error("ldap helper", "err", err)
		return 1
	}
	return 0
}
