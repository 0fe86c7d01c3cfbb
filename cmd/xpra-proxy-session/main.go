// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-proxy-session is the leader of a session the proxy starts:
// the main process of its transient unit, which opens the PAM session (so
// logind registers it), runs the payload as the user and ends the session
// with it. See package logind/leader; it is not meant to be run by hand.
//
//	xpra-proxy-session --user=NAME [--rhost=ADDR] [--type=x11] [--class=user] -- /usr/bin/xpra start ...
package main

import (
	"os"

	"github.com/xpra-proxy/xpra-proxy/logind/leader"
)

func main() {
	os.Exit(leader.Main(os.Args[1:]))
}
