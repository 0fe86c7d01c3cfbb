// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// Local opens cfg's directory as pgdir.Open did before the helper: the
// server runs in this process, over a socket pair, so tests of the
// callers (and of the protocol) need no helper binary. Production uses
// pgdir.Start (the helper process).
func Local(cfg pgdir.Config) (*pgdir.DB, error) {
	return pgdir.OpenWith(cfg, LocalConnector(cfg.Log))
}

// LocalConnector runs Serve in a goroutine for each connection.
func LocalConnector(log *slog.Logger) pgdir.Connector {
	if log == nil {
		log = slog.Default()
	}
	return func() (*pgdir.Backend, error) {
		ours, theirs := net.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		var serr error
		go func() {
			defer close(done)
			serr = Serve(ctx, theirs, log, nil)
			theirs.Close()
		}()
		var once sync.Once
		kill := func() {
			once.Do(func() {
				cancel()
				ours.Close()
				theirs.Close()
			})
		}
		return &pgdir.Backend{Conn: ours, Kill: kill, Done: done, Exit: func() error {
			if serr == nil {
				return errors.New("the server ended")
			}
			return serr
		}}, nil
	}
}
