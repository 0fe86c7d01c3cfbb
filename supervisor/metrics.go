// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/stats"
	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// MetricsType is the Listener.Type of the Prometheus socket
// (metrics-bind, or systemd's with FileDescriptorName=metrics): served
// by the metrics process, never accepted by the supervisor.
const MetricsType = "metrics"

// metricsEvery is the least time between two snapshots root builds: a
// process that asks more often gets the last one again.
const metricsEvery = time.Second

// count records how a connection's exchange ended (stats): accepted is
// when the supervisor accepted it.
func (s *Supervisor) count(x *exchange, accepted time.Time) {
	transport := x.transport
	if transport == "" {
		transport = x.typ
	}
	if x.refused != "" {
		// Refused by its source's limits once its PROXY header named it:
		// counted as a refusal at the accept is.
		s.stats.Connection(x.typ, x.refused)
		return
	}
	result := stats.Closed
	switch {
	case x.accepted != 0:
		result = stats.Relayed
		s.stats.Setup(time.Since(accepted))
	case x.verdict:
		result = stats.Denied
	}
	s.stats.Connection(transport, result)
	if x.username == "" && !x.verdict {
		return // no hello reached us (a version request, a bad client): no login
	}
	module := x.grantedBy
	if module == "" && x.module != nil {
		module = x.module.Name()
	}
	login := stats.Abandoned
	switch {
	case x.accepted != 0:
		login = stats.OK
	case x.denied == "authentication failed" || x.denied == "session not found error":
		login = stats.Failed
	case x.verdict:
		login = stats.Error
	}
	s.stats.Login(transport, module, login)
}

// refusedResult is a limits refusal as a connection result: a label
// value without spaces.
func refusedResult(err error) string {
	var r *limits.Refusal
	if !errors.As(err, &r) {
		return stats.RefusedPrefix + "other"
	}
	switch r.Reason {
	case limits.ReasonFull:
		return stats.RefusedPrefix + "full"
	case limits.ReasonDrop:
		return stats.RefusedPrefix + "dropped"
	case limits.ReasonPerSource:
		return stats.RefusedPrefix + "per-source"
	case limits.ReasonPenalty:
		return stats.RefusedPrefix + "penalty"
	case limits.ReasonRate:
		return stats.RefusedPrefix + "rate"
	case limits.ReasonPerUID:
		return stats.RefusedPrefix + "per-uid"
	}
	return stats.RefusedPrefix + "other"
}

// snapshot is the counters with the figures read at this moment.
func (s *Supervisor) snapshot() stats.Snapshot {
	st := s.limits.Stats()
	g := stats.Gauges{Relays: s.relays.Load(), Preauth: int64(st.Startups),
		Penalized: int64(st.Penalized), Penalties: st.Penalties}
	if s.dir != nil {
		g.Directory = &stats.Directory{Up: s.dir.Status().Up, FallbackLogins: s.dir.FallbackLogins(), PenaltiesHeard: st.Imposed}
	}
	return s.stats.Snapshot(g)
}

// serveMetrics runs the metrics process on l and answers it, starting it
// again if it dies, until ctx ends.
func (s *Supervisor) serveMetrics(ctx context.Context, l net.Listener) {
	defer l.Close()
	fl, ok := l.(interface{ File() (*os.File, error) })
	if !ok {
		s.log.Warn("metrics socket: cannot pass it on", "type", fmt.Sprintf("%T", l))
		return
	}
	lf, err := fl.File()
	if err != nil {
		s.log.Warn("metrics socket", "err", err)
		return
	}
	defer lf.Close()
	s.log.Info("serving metrics", "addr", l.Addr().String())
	for ctx.Err() == nil {
		start := time.Now()
		if err := s.runMetrics(ctx, lf); err != nil && ctx.Err() == nil {
			s.log.Warn("metrics process", "err", err)
		}
		if time.Since(start) < 5*time.Second {
			select { // a crash loop must not spin
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// runMetrics execs one metrics process and answers its requests until it
// exits. Root reads only the message kind; it sends one JSON document.
func (s *Supervisor) runMetrics(ctx context.Context, listener *os.File) error {
	sup, childEnd, err := ipc.Pair()
	if err != nil {
		return err
	}
	defer sup.Close()
	st := s.settings()
	args := s.metricsArgs(st.cfg)
	s.done(st)
	cmd, err := child.Metrics.Command(child.Launch{Path: s.metricsProgram(), Cred: s.control, Args: args,
		Fds: map[string]*os.File{"metrics": listener, "ipc": childEnd}})
	if err != nil {
		childEnd.Close()
		return err
	}
	err = child.Start(cmd)
	childEnd.Close()
	if err != nil {
		return fmt.Errorf("starting the metrics process: %w", err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	go func() {
		s.logSignalled("metrics process", pid, child.Wait(cmd))
		close(done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Kill()
		case <-done:
		}
	}()
	wait := func() { cmd.Process.Kill(); <-done }
	var last []byte
	var lastAt time.Time
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
			return fmt.Errorf("metrics message from pid %d uid %d", peer.Pid, peer.UID)
		}
		if m.Kind != ipc.Metrics {
			wait()
			return fmt.Errorf("metrics process sent %q", m.Kind)
		}
		if last == nil || time.Since(lastAt) >= metricsEvery {
			if last, err = json.Marshal(s.snapshot()); err != nil {
				wait()
				return fmt.Errorf("metrics snapshot: %w", err)
			}
			lastAt = time.Now()
		}
		if err := sup.Send(ipc.Message{Kind: ipc.MetricsReply, Stats: last}, nil); err != nil {
			wait()
			return err
		}
	}
}

// metricsArgs tell the metrics process where the shared encoder is, and
// whose it must be (looked up at each start, as for relays: the user may
// come after us; unknown, the encoder shows as down). From the settings
// in force when it starts: a reload that changes encoder-socket reaches
// the metrics process at its next start, not the running one.
func (s *Supervisor) metricsArgs(cfg Config) []string {
	if cfg.EncoderSocket == "" {
		return nil
	}
	uid := "-1"
	if eu, err := user.Lookup(cfg.EncoderUser); err == nil && eu.Uid != "0" {
		uid = eu.Uid
	} else {
		s.log.Warn("encoder-user not found or root: encoder metrics down", "user", cfg.EncoderUser, "err", err)
	}
	return []string{"--encoder-socket=" + cfg.EncoderSocket, "--encoder-uid=" + uid}
}

// metricsProgram is xpra-proxy-metrics, installed beside the worker.
func (s *Supervisor) metricsProgram() string {
	return filepath.Join(filepath.Dir(s.cfg.Worker), "xpra-proxy-metrics")
}
