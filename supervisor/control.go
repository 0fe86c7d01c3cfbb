// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
)

// DefaultControlSocket is the supervisor's own display, ":proxy" to the
// xpra tools: /run/xpra/<host>-proxy is in the socket-dirs every xpra
// 3.1 client searches.
func DefaultControlSocket() string {
	host, _ := os.Hostname()
	return filepath.Join("/run/xpra", host+"-proxy")
}

// serveControl binds the supervisor's control socket (root-only: mode
// 0600, owner root) and hands it to a control process running as a user
// of its own (xpra-proxy-control, else the pre-auth user), which speaks xpra to whoever connects and asks the
// supervisor for figures or to stop over ipc. Root never parses what a
// control client sends. It returns when ctx ends or the process dies.
func (s *Supervisor) serveControl(ctx context.Context, stop context.CancelFunc, l *net.UnixListener, path string) {
	defer os.Remove(path)
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		s.log.Warn("control socket", "err", err)
		return
	}
	defer lf.Close()
	for ctx.Err() == nil {
		start := time.Now()
		if err := s.runControl(ctx, stop, lf); err != nil && ctx.Err() == nil {
			s.log.Warn("control process", "err", err)
		}
		if time.Since(start) < 5*time.Second {
			select { // a crash loop must not spin
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// openControl binds the control socket before anything is served. A
// socket there that root does not own is someone squatting the name
// root's `xpra info :proxy` will talk to (a member of group xpra can
// create it in /run/xpra, mode 1775): that stops start-up. Other
// failures leave the proxy without a control socket, with a warning.
func (s *Supervisor) openControl() (*net.UnixListener, string, error) {
	path := s.cfg.ControlSocket
	if path == "off" {
		return nil, "", nil
	}
	if path == "" {
		path = DefaultControlSocket()
	}
	l, err := listenControl(path)
	var sq *squatted
	if errors.As(err, &sq) {
		return nil, "", err
	}
	if err != nil {
		s.log.Warn("no control socket", "err", err)
		return nil, "", nil
	}
	return l, path, nil
}

// squatted is a control socket path already taken by a file root does
// not own.
type squatted struct {
	path string
	uid  uint32
}

func (e *squatted) Error() string {
	return fmt.Sprintf("control socket %s already exists and belongs to uid %d, not root: someone may be impersonating the proxy's :proxy display; remove it (and find out who made it), or set control-socket", e.path, e.uid)
}

func listenControl(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		// Made as xpra's package makes /run/xpra, whatever the service's
		// umask: relays look for sessions in it.
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("control socket directory: %w", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("control socket directory: %w", err)
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uint32(os.Geteuid()) {
			uid := uint32(1<<32 - 1)
			if ok {
				uid = st.Uid
			}
			return nil, &squatted{path: path, uid: uid}
		}
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s is in use by a live server", path)
	}
	_ = os.Remove(path) // a dead socket of an earlier run
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	return l, nil
}

// runControl execs one control process and answers its requests until
// it exits.
func (s *Supervisor) runControl(ctx context.Context, stop context.CancelFunc, listener *os.File) error {
	sup, childEnd, err := ipc.Pair()
	if err != nil {
		return err
	}
	defer sup.Close()
	cmd, err := child.Control.Command(child.Launch{Path: s.controlProgram(), Cred: s.control,
		Fds: map[string]*os.File{"control": listener, "ipc": childEnd}})
	if err != nil {
		childEnd.Close()
		return err
	}
	err = child.Start(cmd)
	childEnd.Close()
	if err != nil {
		return fmt.Errorf("starting the control process: %w", err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	go func() {
		s.logSignalled("control process", pid, child.Wait(cmd))
		close(done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Kill()
		case <-done:
		}
	}()
	// os.Process.Kill after the reap is refused, never sent to a reused pid.
	wait := func() { cmd.Process.Kill(); <-done }
	for {
		m, f, peer, err := sup.Recv()
		if f != nil {
			f.Close()
		}
		if err != nil {
			wait()
			if errors.Is(err, ipc.ErrClosed) {
				return nil
			}
			return err
		}
		if !peer.Known || int(peer.Pid) != pid || peer.UID != s.control.Uid {
			wait()
			return fmt.Errorf("control message from pid %d uid %d", peer.Pid, peer.UID)
		}
		switch m.Kind {
		case ipc.Status:
			err = sup.Send(ipc.Message{Kind: ipc.StatusReply, Figures: s.figures()}, nil)
		case ipc.Stop:
			s.log.Info("stop requested on the control socket", audit.Event(audit.ControlStop))
			err = sup.Send(ipc.Message{Kind: ipc.Stopping}, nil)
			stop()
		default:
			err = fmt.Errorf("control process sent %q", m.Kind)
		}
		if err != nil {
			wait()
			return err
		}
	}
}

// figures are the supervisor's counters for `xpra info` and sd_notify.
func (s *Supervisor) figures() map[string]int64 {
	st := s.limits.Stats()
	f := map[string]int64{
		"pid":                int64(os.Getpid()),
		"relays":             s.relays.Load(),
		"authenticated":      s.authenticated.Load(),
		"preauth":            int64(st.Startups),
		"refused.full":       int64(st.Full),
		"refused.dropped":    int64(st.Dropped),
		"refused.per-source": int64(st.PerSource),
		"refused.penalty":    int64(st.Penalty),
		"penalized":          int64(st.Penalized),
	}
	if s.dir != nil {
		f["directory.up"], f["directory.fallback-logins"] = 0, int64(s.dir.FallbackLogins())
		f["directory.penalties-heard"] = int64(st.Imposed)
		if s.dir.Status().Up {
			f["directory.up"] = 1
		}
	}
	return f
}
