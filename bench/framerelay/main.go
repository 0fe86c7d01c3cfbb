// SPDX-License-Identifier: GPL-2.0-or-later

// Command framerelay is the relay worker's core alone, for BENCHMARKS.md:
// it forwards one TCP port to another through relay.Relay (framing,
// packet-type peeks, the queue, cut-through of large raw chunks), with no
// hellos, authentication or pings, so that the flood benchmark can vary
// the cut-through threshold (-splice-min; 0: never).
//
//	framerelay -listen 127.0.0.1:14664 -to 127.0.0.1:15300 -splice-min 65536
package main

import (
	"context"
	"flag"
	"io"
	"log"
	"log/slog"
	"net"

	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/relay"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:14664", "address to listen on")
	to := flag.String("to", "127.0.0.1:15300", "address to forward to")
	spliceMin := flag.Int("splice-min", relay.DefaultSpliceMin, "cut-through threshold in bytes (0: never)")
	flag.Parse()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			s, err := net.Dial("tcp", *to)
			if err != nil {
				log.Print(err)
				return
			}
			defer s.Close()
			r := relay.New(relay.NewLeg("client", c, conn.New(c)), relay.NewLeg("server", s, conn.New(s)),
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			r.SpliceMin = *spliceMin
			r.Run(context.Background())
		}()
	}
}
