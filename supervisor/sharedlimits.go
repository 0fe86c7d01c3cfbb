// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/xpra-proxy/xpra-proxy/supervisor/shared"
)

// The supervisor's hooks into package shared: penalties and relay counts
// shared with the other proxies of the directory. Without a directory
// each is a no-op and the proxy keeps its limits to itself.

// sharedLimits holds what is shared; nil fields without a directory.
type sharedLimits struct {
	penalties *shared.Penalties
	relays    *shared.Relays
}

func (s *Supervisor) newShared() {
	if s.dir == nil {
		return
	}
	forget := func() time.Duration { return s.current().cfg.PerSourcePenaltyForget.Duration }
	s.shared.penalties = shared.NewPenalties(s.dir, s.limits, forget, s.log)
	s.shared.relays = shared.NewRelays(s.dir, s.liveRelays, s.log)
}

// runShared writes to and listens to the directory until ctx ends.
func (s *Supervisor) runShared(ctx context.Context, wg *sync.WaitGroup) {
	if s.shared.penalties != nil {
		wg.Go(func() { s.shared.penalties.Run(ctx) })
	}
	if s.shared.relays != nil {
		wg.Go(func() { s.shared.relays.Run(ctx) })
	}
}

// liveRelays is this proxy's relays, started or adopted: pid to user.
func (s *Supervisor) liveRelays() map[int]string {
	s.registry.mu.Lock()
	defer s.registry.mu.Unlock()
	live := make(map[int]string, len(s.registry.recs))
	for pid, rec := range s.registry.recs {
		live[pid] = rec.User
	}
	return live
}

func (s *Supervisor) sharePenalty(src netip.Addr, failures int, until time.Time) {
	if s.shared.penalties != nil {
		s.shared.penalties.Failed(src, failures, until)
	}
}

func (s *Supervisor) shareSuccess(src netip.Addr) {
	if s.shared.penalties != nil {
		s.shared.penalties.Succeeded(src)
	}
}

// takeShared refuses a relay of user (uid) that the user's relays
// through the other proxies put over max-relays-per-user; the local one
// is counted already (relayCount.take). With the directory down it
// counts nothing (shared.Relays.Others).
func (s *Supervisor) takeShared(uid int, user string) error {
	if s.shared.relays == nil {
		return nil
	}
	n, max := s.userRelays.count(uid)
	if max <= 0 {
		return nil
	}
	if others := s.shared.relays.Others(context.Background(), user); n+others > max {
		return &tooMany{user: user, limit: max}
	}
	return nil
}

func (s *Supervisor) sharedStarted(pid int, user string) {
	if s.shared.relays != nil {
		s.shared.relays.Started(pid, user)
	}
}

func (s *Supervisor) sharedEnded(pid int) {
	if s.shared.relays != nil {
		s.shared.relays.Ended(pid)
	}
}
