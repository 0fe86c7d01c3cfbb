// SPDX-License-Identifier: GPL-2.0-or-later

// Package proxyctl is the proxy's own control sockets, served with package
// control: each relay worker's :proxy-<pid> (connection.go: its info for
// `xpra info` and `xpra-proxy list`, and `xpra stop`), and the
// supervisor's :proxy, served by the unprivileged control process
// (supervisor.go).
package proxyctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/xpra-proxy/xpra-proxy/control"
	"github.com/xpra-proxy/xpra-proxy/protocol/sockdir"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/reencode"
	"github.com/xpra-proxy/xpra-proxy/relay"
	"github.com/xpra-proxy/xpra-proxy/version"
)

// Connection describes a relayed connection for its control socket's
// `info` (and `xpra-proxy list`).
type Connection struct {
	User      string
	Peer      string
	Transport string
	Target    string // the display or URL, without credentials
	Started   time.Time
	Client    *relay.Leg
	Server    *relay.Leg
	Encode    *reencode.Stats // nil: no re-encoding on this connection
}

// Info is what `xpra info :proxy-PID` prints, under "proxy.".
func (c *Connection) Info() value.Dict {
	d := value.Dict{
		{Key: "version", Value: version.Proxy}, {Key: "pid", Value: int64(os.Getpid())},
		{Key: "user", Value: c.User}, {Key: "peer", Value: c.Peer}, {Key: "transport", Value: c.Transport},
		{Key: "target", Value: c.Target}, {Key: "started", Value: c.Started.Unix()},
		{Key: "age", Value: int64(time.Since(c.Started).Seconds())},
	}
	if c.Client != nil && c.Server != nil {
		d = append(d,
			value.Item{Key: "bytes.from-client", Value: c.Client.BytesRead()},
			value.Item{Key: "bytes.to-client", Value: c.Client.BytesWritten()},
			value.Item{Key: "bytes.from-server", Value: c.Server.BytesRead()},
			value.Item{Key: "bytes.to-server", Value: c.Server.BytesWritten()})
	}
	if c.Encode != nil {
		d = append(d, c.Encode.Info()...)
	}
	return value.Dict{{Key: "proxy", Value: d}}
}

// Listen opens the connection's control socket, named like the
// reference's (<host>-proxy-<pid>), in the first of the user's socket
// directories that can hold it. A later directory than the first is a
// fallback, logged as a warning with both places. Then it removes the
// sockets dead workers of this user left in each directory (see
// control.SweepStale). Closing the listener removes the socket file.
func Listen(dirs []string, uid int, log *slog.Logger) (net.Listener, error) {
	host, _ := os.Hostname()
	var errs []error
	var l net.Listener
	for i, dir := range dirs {
		var err error
		if l, err = control.Listen(control.Path(dir, host, os.Getpid()), uid); err != nil {
			errs = append(errs, err)
			continue
		}
		if i > 0 {
			log.Warn("control socket in a fallback location", "path", l.Addr().String(),
				"wanted", control.Path(dirs[0], host, os.Getpid()), "err", errors.Join(errs...))
		}
		break
	}
	if l == nil {
		return nil, errors.Join(errs...)
	}
	for _, dir := range dirs {
		removed, err := control.SweepStale(dir, host, uid)
		if len(removed) > 0 {
			log.Info("removed control sockets of dead relay workers", "dir", dir, "removed", len(removed))
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// An unusable directory was already warned about above.
			log.Debug("sweeping control sockets", "dir", dir, "err", err)
		}
	}
	return l, nil
}

// Serve serves the control socket l until ctx ends or a `stop` request
// arrives (then stop is called), then closes l, which removes its file
// unless keep (root's :proxy-PID, which the supervisor removes).
// Only root and the user may use it.
func Serve(ctx context.Context, l net.Listener, uid int, keep bool, info func() value.Dict, stop func(reason string), log *slog.Logger) {
	srv := &control.Server{Owner: uid, Info: info, Version: version.Protocol, Version6: version.Protocol6, Stop: stop, Log: log, KeepSocket: keep}
	if err := srv.Serve(ctx, l); err != nil && ctx.Err() == nil {
		log.Warn("control socket", "err", err)
	}
}

// ConnectionInfo is one relayed connection as `xpra-proxy list` shows it.
type ConnectionInfo struct {
	Pid         int    `json:"pid"`
	User        string `json:"user"`
	Peer        string `json:"source"`
	Transport   string `json:"transport"`
	Target      string `json:"target"`
	Started     int64  `json:"started"`
	AgeSeconds  int64  `json:"age_seconds"`
	FromClient  int64  `json:"bytes_from_client"`
	ToClient    int64  `json:"bytes_to_client"`
	ControlPath string `json:"control_socket"`
}

// QueryConnection finds the control socket of relay worker pid in the
// caller's socket directories (default: xpra's) and asks it for its info.
func QueryConnection(ctx context.Context, dirs []string, pid int) (ConnectionInfo, error) {
	ci := ConnectionInfo{Pid: pid}
	if len(dirs) == 0 {
		home, _ := os.UserHomeDir()
		dirs = sockdir.Dirs(os.Getuid(), home)
	} else {
		u, _ := user.Current()
		name, home := "", ""
		if u != nil {
			name, home = u.Username, u.HomeDir
		}
		dirs = sockdir.Expand(dirs, os.Getuid(), name, home)
	}
	suffix := fmt.Sprintf("-proxy-%d", pid)
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), suffix) {
				ci.ControlPath = filepath.Join(dir, e.Name())
				break
			}
		}
		if ci.ControlPath != "" {
			break
		}
	}
	if ci.ControlPath == "" {
		return ci, fmt.Errorf("no control socket *%s in %s", suffix, strings.Join(dirs, ", "))
	}
	d, err := control.Query(ctx, ci.ControlPath, "info")
	if err != nil {
		return ci, fmt.Errorf("%s: %w", ci.ControlPath, err)
	}
	p, _ := d.Get("proxy")
	pd, _ := p.(value.Dict)
	str := func(k string) string { v, _ := pd.Get(k); s, _ := value.AsString(v); return s }
	num := func(k string) int64 { v, _ := pd.Get(k); n, _ := v.(int64); return n }
	ci.User, ci.Peer, ci.Transport, ci.Target = str("user"), str("peer"), str("transport"), str("target")
	ci.Started, ci.AgeSeconds = num("started"), num("age")
	ci.FromClient, ci.ToClient = num("bytes.from-client"), num("bytes.to-client")
	return ci, nil
}
