// SPDX-License-Identifier: GPL-2.0-or-later

// Command iocopy is the baseline relay for BENCHMARKS.md: it forwards one
// TCP port to another with io.Copy and nothing else, the fastest a proxy
// that touches no byte could be.
//
//	iocopy -listen 127.0.0.1:14663 -to 127.0.0.1:15300
package main

import (
	"flag"
	"io"
	"log"
	"net"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:14663", "address to listen on")
	to := flag.String("to", "127.0.0.1:15300", "address to forward to")
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
			done := make(chan struct{}, 2)
			go func() { io.Copy(s, c); done <- struct{}{} }()
			go func() { io.Copy(c, s); done <- struct{}{} }()
			<-done
		}()
	}
}
