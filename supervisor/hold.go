// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/coreos/go-systemd/v22/activation"
)

// HoldSockets is what a socket-activated supervisor does when its settings
// are unusable: exiting would make systemd start it again for every queued
// connection until the sockets hit their trigger limit and fail, and then
// fixing the file is not enough to get the port back (issue 15). Instead it
// reports the error as the unit's status, keeps systemd's sockets, and
// closes each connection at once, so clients fail fast and nothing
// retriggers, until it is stopped (systemctl restart, once the file is
// fixed). It returns false, doing nothing, when systemd passed no sockets.
func HoldSockets(ctx context.Context, cause error, log *slog.Logger) bool {
	named, err := activation.ListenersWithNames()
	if err != nil || len(named) == 0 {
		return false
	}
	var ls []net.Listener
	for _, l := range named {
		for _, x := range l {
			if x != nil {
				ls = append(ls, x)
			}
		}
	}
	if len(ls) == 0 {
		return false
	}
	status := fmt.Sprintf("configuration error, refusing connections: %v; fix it, then: systemctl restart xpra-proxy.service", cause)
	log.Error("configuration error: holding systemd's sockets and closing every connection until restarted", "err", cause)
	if err := notifyReady(); err != nil {
		log.Warn("telling systemd", "err", err)
	}
	if err := notifyStatus("%s", status); err != nil {
		log.Warn("telling systemd", "err", err)
	}
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						log.Error("accepting while holding the sockets", "err", err)
					}
					return
				}
				c.Close()
			}
		})
	}
	<-ctx.Done()
	_ = notifyStopping()
	for _, l := range ls {
		l.Close()
	}
	wg.Wait() // systemd keeps its own copies of the sockets
	return true
}
