// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// DialTimeout bounds Forward's dial when ctx allows longer.
const DialTimeout = 10 * time.Second

// Forward relays nc to addr (xpra 3.1's --tcp-proxy=HOST:PORT for traffic
// that is neither xpra nor served HTTP): it dials addr, sends prefix (the
// bytes peeked from nc) first, then copies both ways. When one side ends
// its stream the other side's write half is closed, and Forward returns
// when both directions have ended; an error in either direction, or the
// end of ctx, closes both connections at once. With both ends TCP,
// io.Copy splices in the kernel. Forward closes nc.
func Forward(ctx context.Context, nc net.Conn, prefix []byte, addr string) error {
	defer nc.Close()
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	var d net.Dialer
	up, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("transport: tcp-proxy: %w", err)
	}
	defer up.Close()
	if len(prefix) > 0 {
		if _, err := up.Write(prefix); err != nil {
			return fmt.Errorf("transport: tcp-proxy to %s: %w", addr, err)
		}
	}

	var (
		once     sync.Once
		teardown = func() { once.Do(func() { nc.Close(); up.Close() }) }
		wg       sync.WaitGroup
		errs     [2]error
	)
	stop := context.AfterFunc(ctx, teardown)
	defer stop()
	pipe := func(i int, dst, src net.Conn, what string) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			errs[i] = fmt.Errorf("transport: tcp-proxy %s: %w", what, err)
			teardown()
			return
		}
		// src ended its stream: pass the end on, keep the other way open.
		if cw, ok := dst.(closeWriter); ok {
			if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs[i] = fmt.Errorf("transport: tcp-proxy %s: %w", what, err)
				teardown()
			}
			return
		}
		teardown()
	}
	wg.Add(2)
	go pipe(0, up, nc, "client to "+addr)
	go pipe(1, nc, up, addr+" to client")
	wg.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("transport: tcp-proxy to %s: %w", addr, ctx.Err())
	}
	// The direction that failed first closed both sides, which makes the
	// other one fail with net.ErrClosed: report the cause only.
	var out []error
	for _, e := range errs {
		if e != nil && !errors.Is(e, net.ErrClosed) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		for _, e := range errs {
			if e != nil {
				out = append(out, e)
			}
		}
	}
	return errors.Join(out...)
}
