// SPDX-License-Identifier: GPL-2.0-or-later

package proxyctl

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sort"
	"sync"

	"github.com/xpra-proxy/xpra-proxy/control"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/version"
)

// ServeSupervisor answers `xpra info` and `xpra stop` on the
// supervisor's own control socket (display :proxy), in an unprivileged
// process: root binds the socket, this process speaks xpra on it, and
// asks the supervisor over ipc for its figures or to stop. Only root may
// connect (peer credentials, checked by control.Server).
func ServeSupervisor(ctx context.Context, l net.Listener, sup *ipc.Conn, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex // one request at a time on the ipc channel
	ask := func(kind, want string) (ipc.Message, error) {
		mu.Lock()
		defer mu.Unlock()
		if err := sup.Send(ipc.Message{Kind: kind}, nil); err != nil {
			return ipc.Message{}, err
		}
		m, f, _, err := sup.Recv()
		if f != nil {
			f.Close()
		}
		if err == nil && m.Kind != want {
			err = fmt.Errorf("supervisor answered %q to %q", m.Kind, kind)
		}
		return m, err
	}
	host, _ := os.Hostname()
	info := func() value.Dict {
		m, err := ask(ipc.Status, ipc.StatusReply)
		if err != nil {
			log.Warn("asking the supervisor", "err", err)
		}
		keys := make([]string, 0, len(m.Figures))
		for k := range m.Figures {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		figures := value.Dict{{Key: "version", Value: version.Proxy}}
		for _, k := range keys {
			figures = append(figures, value.Item{Key: k, Value: m.Figures[k]})
		}
		return value.Dict{
			{Key: "server", Value: value.Dict{{Key: "type", Value: "xpra-proxy"}, {Key: "mode", Value: "proxy"},
				{Key: "hostname", Value: host}, {Key: "platform", Value: runtime.GOOS},
				{Key: "pid", Value: m.Figures["pid"]}}},
			{Key: "proxy", Value: figures},
		}
	}
	// The socket is root's: the supervisor removes it.
	srv := &control.Server{Owner: 0, Info: info, Version: version.Protocol, Version6: version.Protocol6, Log: log, KeepSocket: true,
		Stop: func(reason string) {
			log.Info("stop requested", "reason", reason)
			go func() {
				if _, err := ask(ipc.Stop, ipc.Stopping); err != nil {
					log.Warn("asking the supervisor to stop", "err", err)
				}
			}()
		}}
	return srv.Serve(ctx, l)
}
