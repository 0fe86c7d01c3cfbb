// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-proxy-pam is exec'd by the supervisor, as root, once per
// PAM authentication, never run by hand. It reads one request from its
// named descriptor "pam", runs pam_authenticate and pam_acct_mgmt, writes
// one reply and exits (protocol: package pamauth). It opens no session.
//
// PAM runs here and not in the supervisor because PAM modules assume a
// single-threaded caller: every PAM call is made from the main thread,
// locked to it before main starts, in a process that does nothing else.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/logging"
	"github.com/xpra-proxy/xpra-proxy/pamauth"
	"github.com/xpra-proxy/xpra-proxy/pamauth/pamcheck"
)

func init() {
	// The main goroutine stays on the process's first thread, where PAM
	// modules expect to be called (Teleport, PR #4133).
	runtime.LockOSThread()
}

func main() {
	os.Exit(run())
}

func run() int {
	fds, err := child.PAM.Take()
	if err != nil {
		fmt.Fprintln(os.Stderr, "xpra-proxy-pam: start-up:", err)
		fmt.Fprintln(os.Stderr, "xpra-proxy-pam is started by xpra-proxy for each PAM authentication")
		return 2
	}
	// After Take: it opens nothing, but nothing may precede Take.
	log := logging.New(nil).With("stage", "pam", "pid", os.Getpid())
	// No no_new_privs here, unlike the workers: the helper is root and has
	// nothing to gain, while it would stop SELinux from running pam_unix's
	// unix_chkpwd in its own domain where a policy wants that.
	c, err := pamauth.NewConn(fds[pamauth.FdName])
	fds[pamauth.FdName].Close()
	if err != nil {
		log.Error("pam helper", "err", err)
		return 1
	}
	defer c.Close()
	req, err := c.RecvRequest()
	if err != nil {
		log.Error("pam helper", "err", err)
		return 1
	}
	reply := pamcheck.Check(req)
	clear(req.Password)
	if err := c.SendReply(reply); err != nil {
		log.Error("pam helper", "err", err)
		return 1
	}
	return 0
}
