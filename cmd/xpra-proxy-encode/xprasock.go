// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/encode/server"
	"github.com/xpra-proxy/xpra-proxy/encode/xpraenc"
)

// The optional second socket (--xpra-socket) speaks xpra's own encoder
// protocol (encode/xpraenc) to 6.4+ xpra servers, from the same pool,
// with the same limits and allow list as the encproto socket. The two
// share one connection Limiter: the limits bound a uid across both.

// optionalFds are the descriptors of child.Encoder's Optional that the
// root parent passes to the worker: the xpra socket when there is one.
func optionalFds(xpraPath string) []string {
	if xpraPath == "" {
		return nil
	}
	return []string{"xpra"}
}

// bindBoth binds the encproto socket and, when xpraPath is set, the xpra
// one. The xpra socket's directory (xpra's /run/xpra) is not ours: it is
// made if missing but never handed to the encoder user.
func bindBoth(path, xpraPath string, asRoot bool) (f, xf *os.File, err error) {
	if xpraPath != "" && filepath.Clean(xpraPath) == filepath.Clean(path) {
		return nil, nil, errors.New("--xpra-socket and --socket must differ")
	}
	if f, err = bind(path, asRoot); err != nil {
		return nil, nil, err
	}
	if xpraPath == "" {
		return f, nil, nil
	}
	if xf, err = bind(xpraPath, asRoot); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("--xpra-socket: %w", err)
	}
	return f, xf, nil
}

// listenBoth listens on the bound sockets (xf may be nil).
func listenBoth(f, xf *os.File) (ln, xln *net.UnixListener, err error) {
	if xf != nil {
		if xln, err = listen(xf); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("--xpra-socket: %w", err)
		}
	}
	if ln, err = listen(f); err != nil {
		if xln != nil {
			xln.Close()
		}
		return nil, nil, err
	}
	return ln, xln, nil
}

// serveXpra serves xpra's encoder protocol on ln (nil: off) in the
// background with srv's limits, connection counts and allow list; the
// returned func stops it.
func serveXpra(ln *net.UnixListener, path string, srv *server.Server, p *pool.Pool, log *slog.Logger) (stop func()) {
	if ln == nil {
		return func() {}
	}
	xs := xpraenc.New(xpraenc.Config{Config: srv.Config()}, p, log)
	go func() {
		if err := xs.Serve(ln); err != nil {
			log.Error("xpra encoder socket", "err", err)
		}
	}()
	log.Info("encoder: serving xpra's encoder protocol", "socket", path)
	return func() { xs.Close() }
}
