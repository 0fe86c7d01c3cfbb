// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// TestAdoptEarlierRelays: a new supervisor (a restart) counts the relays
// the registry lists that still run, toward max-relays-per-user too,
// drops those that do not, and forgets each adopted one when it ends.
func TestAdoptEarlierRelays(t *testing.T) {
	dir := t.TempDir()
	worker := filepath.Join(dir, "xpra-proxy-worker")
	for _, p := range []string{worker, filepath.Join(dir, "xpra-proxy-preauth")} {
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer live.Process.Kill()
	ticks, err := connlist.StartTicks(live.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	recs := []connlist.Record{
		{Pid: live.Process.Pid, StartTicks: ticks, UID: 65534, User: "nobody", Source: "192.0.2.1:4711", Listener: "tcp", Transport: "tcp"},
		{Pid: gone.Process.Pid, StartTicks: 1, UID: 65534, User: "nobody", Source: "192.0.2.2:4711", Listener: "tcp", Transport: "tcp"},
		// Its pid runs, but it started at another time: a reused pid.
		{Pid: live.Process.Pid, StartTicks: ticks + 1, UID: 1000, User: "other", Source: "192.0.2.3:4711", Listener: "tcp", Transport: "tcp"},
	}
	path := filepath.Join(run, connlist.RegistryFile)
	// Two starts: a registry of the dead and the reused, then one with
	// the live relay.
	for _, tc := range []struct {
		name  string
		recs  []connlist.Record
		relay bool
	}{
		{"a reused pid and a dead relay", recs[1:], false},
		{"a live relay", recs[:2], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := connlist.WriteRegistry(path, tc.recs); err != nil {
				t.Fatal(err)
			}
			cfg, err := ParseFlags([]string{"--auth=none", "--worker=" + worker, "--run-dir=" + run,
				"--control-socket=off", "--html=off", "--max-relays-per-user=1"})
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer s.set.front.Close()
			kept, err := connlist.ReadRegistry(path)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.relay {
				if len(kept) != 0 || s.relays.Load() != 0 {
					t.Fatalf("adopted %d, registry %+v; want none", s.relays.Load(), kept)
				}
				if err := s.userRelays.take(65534, "nobody"); err != nil {
					t.Fatalf("a relay refused with no live one: %v", err)
				}
				return
			}
			if len(kept) != 1 || kept[0] != recs[0] || s.relays.Load() != 1 {
				t.Fatalf("adopted %d, registry %+v; want the live relay %+v", s.relays.Load(), kept, recs[0])
			}
			if err := s.userRelays.take(65534, "nobody"); err == nil {
				t.Fatal("the adopted relay does not count toward max-relays-per-user")
			}
			live.Process.Kill()
			live.Wait()
			eventually(t, "the adopted relay's end counted", func() bool { return s.relays.Load() == 0 })
			eventually(t, "the adopted relay off the registry", func() bool {
				kept, err := connlist.ReadRegistry(path)
				return err == nil && len(kept) == 0
			})
			if err := s.userRelays.take(65534, "nobody"); err != nil {
				t.Fatalf("still counted after its end: %v", err)
			}
		})
	}
}
