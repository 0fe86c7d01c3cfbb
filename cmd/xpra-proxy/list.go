// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/xpra-proxy/xpra-proxy/supervisor"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// list prints the live connections: xpra-proxy list [--json] [settings].
func list(args []string, stdout, stderr io.Writer) int {
	asJSON := false
	rest := args[:0:0]
	for _, a := range args {
		if a == "--json" || a == "-json" {
			asJSON = true
			continue
		}
		rest = append(rest, a)
	}
	cfg, err := supervisor.ParseFlags(rest)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "xpra-proxy list:", err)
		return 2
	}
	conns, err := connlist.Find(context.Background(), cfg.Worker, cfg.RunDir, cfg.SocketDirs)
	if err != nil {
		fmt.Fprintln(stderr, "xpra-proxy list:", err)
		return 1
	}
	if asJSON {
		if conns == nil {
			conns = []connlist.Conn{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(conns); err != nil {
			fmt.Fprintln(stderr, "xpra-proxy list:", err)
			return 1
		}
		return 0
	}
	connlist.Write(stdout, conns)
	return 0
}
