// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// registry is the supervisor's own list of the relays it started, kept
// in a root-only file of its run directory: `xpra-proxy list` reads it,
// and the next supervisor adopts the relays that outlive this one (they
// still count toward max-relays-per-user, and the file stays right).
type registry struct {
	path string
	log  *slog.Logger
	mu   sync.Mutex
	recs map[int]connlist.Record
}

// openRunDir makes the run directory (0700) or checks the one there:
// a directory of ours that no one else can write, since what is in it
// is believed.
func openRunDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("run-dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("run-dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || st.Uid != uint32(os.Geteuid()) || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("run-dir %s (%s) must be a directory of uid %d that no one else can write", dir, fi.Mode(), os.Geteuid())
	}
	return nil
}

// newRegistry reads what an earlier supervisor left and keeps the relays
// still running; adopt is called for each.
func newRegistry(dir string, log *slog.Logger, adopt func(connlist.Record)) (*registry, error) {
	if err := openRunDir(dir); err != nil {
		return nil, err
	}
	r := &registry{path: filepath.Join(dir, connlist.RegistryFile), log: log, recs: map[int]connlist.Record{}}
	old, err := connlist.ReadRegistry(r.path)
	if err != nil {
		log.Warn("the earlier relay registry is unreadable: starting a new one", "err", err)
	}
	for _, rec := range old {
		if rec.Alive() {
			r.recs[rec.Pid] = rec
			adopt(rec)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writeLocked()
	return r, nil
}

func (r *registry) add(rec connlist.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs[rec.Pid] = rec
	r.writeLocked()
}

func (r *registry) remove(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.recs, pid)
	r.writeLocked()
}

func (r *registry) writeLocked() {
	recs := make([]connlist.Record, 0, len(r.recs))
	for _, rec := range r.recs {
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b connlist.Record) int { return a.Pid - b.Pid })
	if err := connlist.WriteRegistry(r.path, recs); err != nil {
		r.log.Warn("relay registry not updated: xpra-proxy list may be out of date", "err", err)
	}
}

// adopt counts a relay an earlier supervisor started and takes it off
// the registry when it ends (waited for through its pidfd: it is not our
// child).
func (s *Supervisor) adopt(rec connlist.Record) {
	s.relays.Add(1)
	s.userRelays.force(rec.UID)
	s.sharedStarted(rec.Pid, rec.User)
	s.log.Info("relay of an earlier supervisor adopted", "worker", rec.Pid, "user", rec.User, "peer", rec.Source)
	go func() {
		if p, err := os.FindProcess(rec.Pid); err == nil {
			if err := child.Exited(p); err != nil {
				s.log.Debug("adopted relay", "worker", rec.Pid, "err", err) // gone already: not our child to wait for
			}
		}
		s.relays.Add(-1)
		s.userRelays.release(rec.UID)
		s.registry.remove(rec.Pid)
		s.sharedEnded(rec.Pid)
		s.removeRootControl(rec.Pid)
		// Its report went to the supervisor that started it: no bytes.
		s.log.Info("relay worker ended", "worker", rec.Pid, audit.KeyUser, rec.User, "peer", rec.Source,
			audit.KeySource, source(rec.Source), audit.KeyTransport, rec.Transport, audit.Event(audit.RelayEnded), "adopted", true)
	}()
}
