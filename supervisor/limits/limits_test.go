// SPDX-License-Identifier: GPL-2.0-or-later

package limits

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

var unix netip.Addr // unix-socket peers have no address

func newLimiter(t *testing.T, cfg Config, c *clock, rnd func() float64) *Limiter {
	t.Helper()
	if rnd == nil {
		rnd = func() float64 { return 0.999 } // never drops at random unless p is 100
	}
	l, err := New(cfg, c.now, rnd)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func reason(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestConfigCheck(t *testing.T) {
	mod := func(f func(*Config)) Config { c := Defaults(); f(&c); return c }
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Defaults(), ""},
		{"no per-source limit", mod(func(c *Config) { c.PerSource = 0 }), ""},
		{"no penalties", mod(func(c *Config) { c.PenaltyMin, c.PenaltyMax, c.PenaltyTable = 0, 0, 0 }), ""},
		{"zero startups", mod(func(c *Config) { c.MaxStartups = Startups{} }), "must be positive"},
		{"negative per source", mod(func(c *Config) { c.PerSource = -1 }), "per-source-max-startups -1"},
		{"bad block", mod(func(c *Config) { c.NetBlock.IPv6 = 200 }), "IPv6 block size 200"},
		{"negative penalty", mod(func(c *Config) { c.PenaltyMin = -time.Second }), "must not be negative"},
		{"max below min", mod(func(c *Config) { c.PenaltyMax = time.Millisecond }), "below per-source-penalty"},
		{"forget below max", mod(func(c *Config) { c.PenaltyForget = 10 * time.Second }), "per-source-penalty-forget 10s"},
		{"no table", mod(func(c *Config) { c.PenaltyTable = 0 }), "per-source-penalty-table 0"},
		{"no rate limit", mod(func(c *Config) { c.Rate, c.Burst = 0, 0 }), ""},
		{"negative rate", mod(func(c *Config) { c.Rate = -1 }), "per-source-rate -1"},
		{"rate without burst", mod(func(c *Config) { c.Burst = 0 }), "burst of at least 1"},
		{"negative per uid", mod(func(c *Config) { c.PerUID = -1 }), "per-uid-max-startups -1"},
	}
	for _, tc := range tests {
		_, err := New(tc.cfg, nil, nil)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: New = %v, want error %q", tc.name, err, tc.wantErr)
		}
	}
}

// sshdP is sshd's should_drop_connection probability, written out again.
func sshdP(s Startups, n int) int {
	if n < s.Start {
		return 0
	}
	if n >= s.Full {
		return 100
	}
	return s.Rate + (100-s.Rate)*(n-s.Start)/(s.Full-s.Start)
}

// TestRandomEarlyDrop holds n connections and tries one more with every
// random draw r/100: exactly sshd's p of the 100 draws must be refused.
func TestRandomEarlyDrop(t *testing.T) {
	for _, st := range []Startups{{10, 30, 100}, {50, 30, 200}, {3, 1, 7}, {5, 100, 5}, {2, 100, 6}, {4, 50, 5}, {1, 99, 2}} {
		t.Run(st.String(), func(t *testing.T) {
			var draw float64
			cfg := Defaults()
			cfg.MaxStartups, cfg.PerSource, cfg.Rate = st, 0, 0
			l := newLimiter(t, cfg, newClock(), func() float64 { return draw })
			for n := 0; n <= st.Full+1; n++ {
				l.mu.Lock()
				l.startups = n // as if n connections were held
				l.mu.Unlock()
				refused := map[string]int{}
				for r := range 100 {
					draw = (float64(r) + 0.5) / 100 // the middle of draw r
					release, err := l.Admit(addr("192.0.2.1"))
					if err != nil {
						refused[reason(err)]++
						continue
					}
					release()
				}
				want := sshdP(st, n)
				got := refused[ReasonDrop] + refused[ReasonFull]
				if got != want || len(refused) > 1 || (n >= st.Full) != (refused[ReasonFull] == 100) {
					t.Fatalf("holding %d: refused %v of 100, want %d (all full from %d)", n, refused, want, st.Full)
				}
			}
		})
	}
}

func TestStartupsBoundaries(t *testing.T) {
	c := newClock()
	cfg := Defaults()
	cfg.MaxStartups, cfg.PerSource = Startups{Start: 2, Rate: 30, Full: 4}, 0
	var draw float64
	l := newLimiter(t, cfg, c, func() float64 { return draw })
	steps := []struct {
		draw float64
		want string
	}{
		{0, ""}, {0, ""}, // below start: admitted whatever the draw
		{0.29, ReasonDrop}, // at start: p = 30
		{0.30, ""},         // r = 30 is not < 30
		{0.64, ReasonDrop}, // 3 held: p = 30 + 70*1/2 = 65
		{0.65, ""},
		{0.999, ReasonFull}, // at full: refused whatever the draw
		{0, ReasonFull},
	}
	var releases []func()
	for i, s := range steps {
		draw = s.draw
		release, err := l.Admit(unix)
		if got := reason(err); got != s.want {
			t.Fatalf("step %d (draw %v, holding %d): %q, want %q", i, s.draw, len(releases), got, s.want)
		}
		if release != nil {
			releases = append(releases, release)
		}
	}
	// Releasing one (twice: harmless) makes room for exactly one.
	releases[0]()
	releases[0]()
	draw = 0.999
	if _, err := l.Admit(unix); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := l.Admit(unix); reason(err) != ReasonFull {
		t.Fatalf("after refilling: %v", err)
	}
	st := l.Stats()
	if st.Startups != 4 || st.Admitted != 5 || st.Full != 3 || st.Dropped != 2 || st.Sources != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPerSource(t *testing.T) {
	tests := []struct {
		name  string
		block NetBlockSize
		same  []string // all in one block with the first
		other []string // each in a block of its own
	}{
		{"ipv4 /32", NetBlockSize{32, 128}, []string{"198.51.100.7", "::ffff:198.51.100.7"}, []string{"198.51.100.8", "2001:db8::1"}},
		{"ipv4 /24", NetBlockSize{24, 128}, []string{"198.51.100.7", "198.51.100.200", "::ffff:198.51.100.1"}, []string{"198.51.101.7", "10.0.0.1"}},
		{"ipv6 /128", NetBlockSize{32, 128}, []string{"2001:db8::1", "2001:db8::1%eth0"}, []string{"2001:db8::2", "198.51.100.7"}},
		{"ipv6 /64", NetBlockSize{32, 64}, []string{"2001:db8::1", "2001:db8::ffff:1", "2001:db8:0:0:8000::"}, []string{"2001:db8:0:1::1", "2001:db9::1"}},
		{"all one", NetBlockSize{0, 0}, []string{"198.51.100.7", "10.1.2.3"}, []string{"2001:db8::1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.PerSource, cfg.NetBlock = 3, tc.block
			l := newLimiter(t, cfg, newClock(), nil)
			var held []func()
			for i := range 3 {
				release, err := l.Admit(addr(tc.same[i%len(tc.same)]))
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				held = append(held, release)
			}
			for _, a := range tc.same {
				if _, err := l.Admit(addr(a)); reason(err) != ReasonPerSource {
					t.Errorf("%s with the block full: %v, want the per-source limit", a, err)
				}
			}
			for _, a := range tc.other {
				release, err := l.Admit(addr(a))
				if err != nil {
					t.Errorf("%s, another block: %v", a, err)
					continue
				}
				release()
			}
			// Unix peers have no block: never limited per source.
			for range 10 {
				if _, err := l.Admit(unix); err != nil {
					t.Fatalf("unix peer: %v", err)
				}
			}
			held[0]()
			if _, err := l.Admit(addr(tc.same[len(tc.same)-1])); err != nil {
				t.Errorf("after one left: %v", err)
			}
			if st := l.Stats(); st.Sources != 1 || st.Startups != 13 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// Unix peers are exempt per source but fill the global cap like anyone.
func TestUnixCountsGlobally(t *testing.T) {
	cfg := Defaults()
	cfg.MaxStartups, cfg.PerSource = Startups{Start: 3, Rate: 100, Full: 3}, 1
	l := newLimiter(t, cfg, newClock(), nil)
	for range 3 {
		if _, err := l.Admit(unix); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []netip.Addr{unix, addr("192.0.2.1")} {
		if _, err := l.Admit(a); reason(err) != ReasonFull {
			t.Errorf("%v: %v, want full", a, err)
		}
	}
	// Nor do failures from a unix peer penalise anything.
	l.Failed(unix)
	if st := l.Stats(); st.Tracked != 0 {
		t.Errorf("a unix failure was recorded: %+v", st)
	}
}

func TestPenalties(t *testing.T) {
	src, other := addr("203.0.113.9"), addr("203.0.113.10")
	type step struct {
		wait    time.Duration // advance the clock first
		do      string        // "admit", "check", "fail", "ok"
		who     netip.Addr
		want    string        // admit/check: "" or the refusal reason
		wantEnd time.Duration // for a penalty refusal: time left
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"one failure bars the source for 1s", []step{
			{0, "fail", src, "", 0},
			{0, "admit", src, ReasonPenalty, time.Second},
			{0, "admit", other, "", 0},
			{999 * time.Millisecond, "admit", src, ReasonPenalty, time.Millisecond},
			{time.Millisecond, "admit", src, "", 0},
		}},
		{"refusals do not extend it", []step{
			{0, "fail", src, "", 0},
			{300 * time.Millisecond, "admit", src, ReasonPenalty, 700 * time.Millisecond},
			{300 * time.Millisecond, "check", src, ReasonPenalty, 400 * time.Millisecond},
			{300 * time.Millisecond, "admit", src, ReasonPenalty, 100 * time.Millisecond},
			{100 * time.Millisecond, "admit", src, "", 0},
		}},
		{"consecutive failures double it up to the max", []step{
			{0, "fail", src, "", 0},
			{time.Second, "fail", src, "", 0},
			{0, "admit", src, ReasonPenalty, 2 * time.Second},
			{2 * time.Second, "fail", src, "", 0},
			{0, "admit", src, ReasonPenalty, 4 * time.Second},
			{4 * time.Second, "fail", src, "", 0},
			{8 * time.Second, "fail", src, "", 0},
			{0, "admit", src, ReasonPenalty, 16 * time.Second},
			{16 * time.Second, "fail", src, "", 0},
			{0, "admit", src, ReasonPenalty, 30 * time.Second}, // not 32
			{30 * time.Second, "fail", src, "", 0},
			{0, "admit", src, ReasonPenalty, 30 * time.Second},
			{30 * time.Second, "admit", src, "", 0},
		}},
		{"a failure during the penalty counts (a parallel guess)", []step{
			{0, "fail", src, "", 0},
			{0, "fail", src, "", 0},
			{0, "admit", src, ReasonPenalty, 2 * time.Second},
		}},
		{"a success clears the source", []step{
			{0, "fail", src, "", 0},
			{time.Second, "fail", src, "", 0},
			{2 * time.Second, "ok", src, "", 0},
			{0, "admit", src, "", 0},
			{0, "fail", src, "", 0},
			{0, "admit", src, ReasonPenalty, time.Second}, // back to the minimum
		}},
		{"a success during a penalty lifts it", []step{
			{0, "fail", src, "", 0},
			{0, "ok", src, "", 0},
			{0, "admit", src, "", 0},
			{0, "check", src, "", 0},
		}},
		{"forgotten after 10 min without failures", []step{
			{0, "fail", src, "", 0},
			{time.Second, "fail", src, "", 0},
			{10*time.Minute - time.Nanosecond, "fail", src, "", 0}, // not yet forgotten: third
			{0, "admit", src, ReasonPenalty, 4 * time.Second},
			{10 * time.Minute, "fail", src, "", 0}, // forgotten: first again
			{0, "admit", src, ReasonPenalty, time.Second},
		}},
		{"sources are blocks", []step{
			{0, "fail", addr("::ffff:203.0.113.9"), "", 0},
			{0, "admit", src, ReasonPenalty, time.Second},
			{0, "check", src, ReasonPenalty, time.Second},
		}},
		{"unix peers are exempt", []step{
			{0, "fail", unix, "", 0},
			{0, "admit", unix, "", 0},
			{0, "check", unix, "", 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := newLimiter(t, Defaults(), c, nil)
			for i, s := range tc.steps {
				c.advance(s.wait)
				var err error
				switch s.do {
				case "fail":
					l.Failed(s.who)
					continue
				case "ok":
					l.Succeeded(s.who)
					continue
				case "admit":
					var release func()
					if release, err = l.Admit(s.who); release != nil {
						release()
					}
				case "check":
					err = l.Check(s.who)
				}
				if got := reason(err); got != s.want {
					t.Fatalf("step %d (%s %v): %q, want %q", i, s.do, s.who, got, s.want)
				}
				if s.want == ReasonPenalty {
					var r *Refusal
					errors.As(err, &r)
					if left := r.Until.Sub(c.now()); left != s.wantEnd {
						t.Fatalf("step %d: penalty ends in %s, want %s", i, left, s.wantEnd)
					}
				}
			}
		})
	}
}

func TestPenaltiesOff(t *testing.T) {
	cfg := Defaults()
	cfg.PenaltyMin, cfg.PenaltyMax = 0, 0
	l := newLimiter(t, cfg, newClock(), nil)
	if until, n := l.Failed(addr("192.0.2.1")); !until.IsZero() || n != 0 {
		t.Errorf("penalties off: Failed gave a penalty until %v, %d failures", until, n)
	}
	if _, err := l.Admit(addr("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if n := l.Stats().Penalties; n != 0 {
		t.Errorf("penalties off: %d counted", n)
	}
}

// Stats.Penalties counts every penalty imposed, the Prometheus counter;
// a source's second failure is a second penalty, a unix peer (no
// address) gets none.
func TestPenaltiesCounted(t *testing.T) {
	l := newLimiter(t, Defaults(), newClock(), nil)
	l.Failed(addr("192.0.2.1"))
	l.Failed(addr("192.0.2.1"))
	l.Failed(addr("192.0.2.2"))
	l.Failed(netip.Addr{})
	if n := l.Stats().Penalties; n != 3 {
		t.Errorf("penalties: %d, want 3", n)
	}
}

// The table keeps at most PenaltyTable sources; a new one pushes out the
// source whose last failure is the oldest.
func TestPenaltyTableBound(t *testing.T) {
	c := newClock()
	cfg := Defaults()
	cfg.PenaltyTable = 3
	l := newLimiter(t, cfg, c, nil)
	a, b, cc, d := addr("192.0.2.1"), addr("192.0.2.2"), addr("192.0.2.3"), addr("192.0.2.4")
	l.Failed(a)
	c.advance(time.Millisecond)
	l.Failed(b)
	c.advance(time.Millisecond)
	l.Failed(cc)
	c.advance(time.Millisecond)
	l.Failed(a) // a is now the most recent: b is the oldest
	c.advance(time.Millisecond)
	l.Failed(d)
	if _, err := l.Admit(b); err != nil {
		t.Errorf("the evicted source is still barred: %v", err)
	}
	for _, x := range []netip.Addr{a, cc, d} {
		if _, err := l.Admit(x); reason(err) != ReasonPenalty {
			t.Errorf("%v: %v, want its penalty", x, err)
		}
	}
	// a kept its count across the eviction of another: its third failure is 4 s.
	if until, n := l.Failed(a); n != 3 || until.Sub(c.now()) != 4*time.Second {
		t.Errorf("a's third failure: until %v, %d failures", until.Sub(c.now()), n)
	}
	if err := l.Check(a); err == nil || err.(*Refusal).Until.Sub(c.now()) != 4*time.Second {
		t.Errorf("a after three failures: %v", err)
	}
	if st := l.Stats(); st.Tracked != 3 || st.Evicted != 1 || st.Penalized != 3 {
		t.Errorf("stats %+v", st)
	}
	// A flood of new sources never grows the table.
	for i := range 1000 {
		l.Failed(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	if st := l.Stats(); st.Tracked != 3 || st.Evicted != 1001 {
		t.Errorf("after the flood: %+v", st)
	}
}

func TestStats(t *testing.T) {
	c := newClock()
	l := newLimiter(t, Defaults(), c, nil)
	r1, _ := l.Admit(addr("192.0.2.1"))
	l.Admit(addr("192.0.2.1"))
	l.Admit(addr("2001:db8::1"))
	l.Admit(unix)
	l.Failed(addr("192.0.2.9"))
	l.Failed(addr("192.0.2.8"))
	l.Admit(addr("192.0.2.9"))
	c.advance(time.Second) // both penalties over, both still remembered
	l.Failed(addr("192.0.2.8"))
	r1()
	want := Stats{Startups: 3, Sources: 2, Tracked: 2, Penalized: 1, Admitted: 4, Penalty: 1, Penalties: 3}
	if st := l.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	c.advance(10 * time.Minute)
	if st := l.Stats(); st.Tracked != 0 || st.Penalized != 0 {
		t.Errorf("after 10 min: %+v", st)
	}
}

func TestRefusalError(t *testing.T) {
	until := time.Date(2025, 1, 1, 0, 0, 1, 0, time.UTC)
	for _, tc := range []struct {
		r    Refusal
		want string
	}{
		{Refusal{Reason: ReasonFull}, "connection refused: full"},
		{Refusal{Reason: ReasonPenalty, Until: until}, "connection refused: penalty until 2025-01-01T00:00:01Z"},
	} {
		if got := tc.r.Error(); got != tc.want {
			t.Errorf("%q, want %q", got, tc.want)
		}
	}
}

// TestConcurrent hammers one Limiter from many goroutines (run with
// -race): the caps hold at every instant and everything is released at
// the end.
func TestConcurrent(t *testing.T) {
	cfg := Defaults()
	cfg.MaxStartups, cfg.PerSource, cfg.NetBlock = Startups{Start: 20, Rate: 30, Full: 40}, 3, NetBlockSize{24, 64}
	cfg.PenaltyTable = 16
	l, err := New(cfg, nil, nil) // the real clock and randomness
	if err != nil {
		t.Fatal(err)
	}
	var held atomic.Int64
	var perBlock [8]atomic.Int64
	var maxHeld, admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 2000 {
				blk := r.IntN(8)
				var src netip.Addr
				if blk < 7 {
					src = netip.AddrFrom4([4]byte{10, byte(blk), 0, byte(r.IntN(256))})
				}
				release, err := l.Admit(src)
				switch {
				case err == nil:
				case reason(err) == "" || strings.HasPrefix(reason(err), "other"):
					t.Errorf("bad error %v", err)
					return
				default:
					continue
				}
				admitted.Add(1)
				n := held.Add(1)
				for m := maxHeld.Load(); n > m && !maxHeld.CompareAndSwap(m, n); m = maxHeld.Load() {
				}
				if blk < 7 {
					if k := perBlock[blk].Add(1); k > 3 {
						t.Errorf("block %d holds %d", blk, k)
					}
				}
				switch r.IntN(10) {
				case 0:
					l.Failed(src)
				case 1:
					l.Succeeded(src)
				case 2:
					l.Stats()
				case 3:
					l.Check(src)
				}
				if blk < 7 {
					perBlock[blk].Add(-1)
				}
				held.Add(-1)
				release()
				release()
			}
		})
	}
	wg.Wait()
	st := l.Stats()
	if maxHeld.Load() > 40 || st.Startups != 0 || st.Sources != 0 || st.Tracked > 16 || uint64(admitted.Load()) != st.Admitted {
		t.Fatalf("max held %d, admitted %d, stats %+v", maxHeld.Load(), admitted.Load(), st)
	}
	t.Logf("max held %d, stats %+v", maxHeld.Load(), st)
}

func TestThrottle(t *testing.T) {
	c := newClock()
	th := NewThrottle(time.Second, 2, c.now)
	var got []string
	for i := range 12 {
		if i == 5 || i == 6 {
			c.advance(time.Second)
		}
		ok, n := th.Allow()
		got = append(got, fmt.Sprintf("%v/%d", ok, n))
	}
	want := "true/0 true/0 false/0 false/0 false/0 true/3 true/0 true/0 false/0 false/0 false/0 false/0"
	if strings.Join(got, " ") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
}

// TestRate: a source gets Burst connections at once and then Rate per
// second, however few it holds; other sources are not affected; an IPv6
// /64 is one source.
func TestRate(t *testing.T) {
	cfg := Defaults()
	cfg.Rate, cfg.Burst, cfg.PerSource = 2, 5, 0
	for _, tc := range []struct {
		name       string
		same, next netip.Addr // two addresses of one source block, and another block
	}{
		{"IPv4", addr("192.0.2.1"), addr("192.0.2.2")},
		{"IPv6 /64", addr("2001:db8:1:2::1"), addr("2001:db8:1:2:ffff:ffff:ffff:ffff")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := newLimiter(t, cfg, c, nil)
			admitted := 0
			for i := range 100 {
				a := tc.same
				if i%2 == 1 {
					a = tc.next
				}
				release, err := l.Admit(a)
				if err == nil {
					admitted++
					release() // the rate holds however few are held
				} else if reason(err) != ReasonRate {
					t.Fatalf("refused for %q", reason(err))
				}
			}
			if tc.name == "IPv4" {
				// Two blocks (/32): each has its own burst.
				if admitted != 2*cfg.Burst {
					t.Fatalf("admitted %d at once, want %d (a burst per /32)", admitted, 2*cfg.Burst)
				}
				return
			}
			if admitted != cfg.Burst {
				t.Fatalf("admitted %d at once from one /64, want %d", admitted, cfg.Burst)
			}
			if _, err := l.Admit(addr("2001:db8:1:3::1")); err != nil {
				t.Fatalf("another /64: %v", err)
			}
			// 10 s later: 20 more tokens, but at most Burst.
			c.advance(10 * time.Second)
			admitted = 0
			for range 100 {
				if release, err := l.Admit(tc.same); err == nil {
					admitted++
					release()
				}
			}
			if admitted != cfg.Burst {
				t.Fatalf("after 10 s admitted %d, want the burst %d", admitted, cfg.Burst)
			}
			c.advance(1500 * time.Millisecond) // 3 tokens
			admitted = 0
			for range 10 {
				if release, err := l.Admit(tc.same); err == nil {
					admitted++
					release()
				}
			}
			if admitted != 3 {
				t.Fatalf("after 1.5 s at 2/s admitted %d, want 3", admitted)
			}
			if st := l.Stats(); st.Rate == 0 {
				t.Fatalf("stats count no rate refusals: %+v", st)
			}
		})
	}
}

// TestRateTableBounded: the buckets of many sources stay within
// PenaltyTable entries.
func TestRateTableBounded(t *testing.T) {
	cfg := Defaults()
	cfg.PenaltyTable, cfg.Rate, cfg.Burst = 100, 1, 1
	l := newLimiter(t, cfg, newClock(), nil)
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		release, err := l.Admit(a)
		if err != nil {
			t.Fatalf("source %d: %v", i, err)
		}
		release()
	}
	if n := len(l.buckets); n > cfg.PenaltyTable || l.byUse.Len() != n {
		t.Fatalf("%d buckets (list %d), want at most %d", n, l.byUse.Len(), cfg.PenaltyTable)
	}
}

// TestPerUID: a local uid holds at most PerUID unauthenticated unix
// connections and has its own rate; other uids and TCP sources keep
// theirs.
func TestPerUID(t *testing.T) {
	cfg := Defaults()
	cfg.PerUID, cfg.Rate = 3, 0
	l := newLimiter(t, cfg, newClock(), nil)
	var held []func()
	for i := range 10 {
		release, err := l.AdmitFrom(Source{Local: true, UID: 1000})
		if i < cfg.PerUID {
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			held = append(held, release)
		} else if reason(err) != ReasonPerUID {
			t.Fatalf("connection %d: %v, want %q", i, err, ReasonPerUID)
		}
	}
	if _, err := l.AdmitFrom(Source{Local: true, UID: 1001}); err != nil {
		t.Fatalf("another uid: %v", err)
	}
	if _, err := l.Admit(addr("192.0.2.9")); err != nil {
		t.Fatalf("a TCP source: %v", err)
	}
	held[0]()
	if _, err := l.AdmitFrom(Source{Local: true, UID: 1000}); err != nil {
		t.Fatalf("after one closed: %v", err)
	}
	// A local uid is a rate source of its own.
	cfg.PerUID, cfg.Rate, cfg.Burst = 0, 1, 2
	l = newLimiter(t, cfg, newClock(), nil)
	for i := range 3 {
		_, err := l.AdmitFrom(Source{Local: true, UID: 1000})
		if (err == nil) != (i < 2) {
			t.Fatalf("local connection %d: %v", i, err)
		}
	}
	if _, err := l.AdmitFrom(Source{Local: true, UID: 1001}); err != nil {
		t.Fatalf("another uid's rate: %v", err)
	}
}

// AdmitRanked counts a source's unauthenticated connections at
// admission, per block (or per uid for unix peers), this one included,
// and a release makes room at the same rank again.
func TestAdmitRanked(t *testing.T) {
	cfg := Defaults()
	cfg.NetBlock = NetBlockSize{24, 64}
	l := newLimiter(t, cfg, newClock(), nil)
	steps := []struct {
		from Source
		rank int
	}{
		{Source{Addr: addr("198.51.100.7")}, 1},
		{Source{Addr: addr("198.51.100.8")}, 2}, // the same /24
		{Source{Addr: addr("203.0.113.1")}, 1},  // another block
		{Source{Addr: addr("::ffff:198.51.100.9")}, 3},
		{Source{Addr: addr("2001:db8::1")}, 1},
		{Source{Addr: addr("2001:db8::2")}, 2}, // the same /64
		{Source{Local: true, UID: 1000}, 1},
		{Source{Local: true, UID: 1000}, 2},
		{Source{Local: true, UID: 1001}, 1},
		{Source{}, 1}, // neither block nor uid
		{Source{}, 1},
	}
	var releases []func()
	for i, st := range steps {
		release, rank, err := l.AdmitRanked(st.from)
		if err != nil {
			t.Fatalf("step %d %+v: %v", i, st.from, err)
		}
		if rank != st.rank {
			t.Errorf("step %d %+v: rank %d, want %d", i, st.from, rank, st.rank)
		}
		releases = append(releases, release)
	}
	releases[0]()
	releases[0]() // twice counts once
	if _, rank, err := l.AdmitRanked(Source{Addr: addr("198.51.100.1")}); err != nil || rank != 3 {
		t.Errorf("after one of three left: rank %d, err %v; want 3", rank, err)
	}
}

// TestReconfigure: a reload changes the limits and keeps what the limiter
// knows: penalties, the connections admitted and the tables' bounds.
func TestReconfigure(t *testing.T) {
	c := newClock()
	cfg := Defaults()
	cfg.PerSource = 3
	l := newLimiter(t, cfg, c, nil)
	a, b, x := addr("192.0.2.1"), addr("192.0.2.2"), addr("198.51.100.7")
	l.Failed(a)
	c.advance(time.Millisecond)
	l.Failed(b)
	var held []func()
	for range 2 {
		release, err := l.Admit(x)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}

	bad := cfg
	bad.PenaltyMax = bad.PenaltyMin / 2
	if err := l.Reconfigure(bad); err == nil {
		t.Fatal("a penalty max below the min was taken")
	}
	next := cfg
	next.PerSource = 2
	next.PenaltyTable = 1
	next.PenaltyMin = 5 * time.Second
	next.PenaltyMax = time.Minute
	if err := l.Reconfigure(next); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		who  netip.Addr
		want string
	}{
		{"the newest penalty is kept", b, ReasonPenalty},
		{"the oldest is cut with the smaller table", a, ""},
		{"the new per-source limit counts the connections admitted before", x, ReasonPerSource},
	}
	for _, tt := range tests {
		release, err := l.Admit(tt.who)
		if reason(err) != tt.want {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
		if release != nil {
			release()
		}
	}
	held[0]()
	if _, err := l.Admit(x); err != nil {
		t.Errorf("after a release under the new limit: %v", err)
	}
	c.advance(2 * time.Second)
	l.Failed(x)
	if err := l.Check(x); err == nil || err.(*Refusal).Until.Sub(c.now()) != 5*time.Second {
		t.Errorf("a failure after the reload: %v, want the new 5s penalty", err)
	}
	if st := l.Stats(); st.Startups != 2 {
		t.Errorf("startups %d, want 2 (one held from before, one after)", st.Startups)
	}
}

// TestAdmitProxied: a connection from a trusted load balancer is counted
// toward the global cap at its accept (as a peer without a block), then
// its reported source meets that source's own penalty, rate and cap,
// shared with the source's direct connections; the global count is not
// taken twice, and another source is untouched.
func TestAdmitProxied(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(l *Limiter, c *clock) // what the source did before
		src    string
		reason string // "" admitted
	}{
		{"fresh source", func(*Limiter, *clock) {}, "198.51.100.7", ""},
		{"penalised source", func(l *Limiter, _ *clock) { l.Failed(addr("198.51.100.7")) }, "198.51.100.7", ReasonPenalty},
		{"penalised source as ::ffff:", func(l *Limiter, _ *clock) { l.Failed(addr("198.51.100.7")) }, "::ffff:198.51.100.7", ReasonPenalty},
		{"another source than the penalised one", func(l *Limiter, _ *clock) { l.Failed(addr("198.51.100.7")) }, "198.51.100.8", ""},
		{"penalty over", func(l *Limiter, c *clock) { l.Failed(addr("198.51.100.7")); c.advance(2 * time.Second) }, "198.51.100.7", ""},
		{"source block full of direct connections", func(l *Limiter, _ *clock) {
			for range 2 {
				if _, err := l.Admit(addr("198.51.100.7")); err != nil {
					panic(err)
				}
			}
		}, "198.51.100.7", ReasonPerSource},
		{"source over its rate", func(l *Limiter, _ *clock) {
			for range 4 {
				if r, err := l.Admit(addr("2001:db8::1")); err == nil {
					r()
				}
			}
		}, "2001:db8::1", ReasonRate},
		{"not an address", func(*Limiter, *clock) {}, "", "other: proxied source invalid IP: not an IP address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.PerSource, cfg.Rate, cfg.Burst = 2, 1, 4
			c := newClock()
			l := newLimiter(t, cfg, c, nil)
			tc.setup(l, c)
			before := l.Stats()
			// The accept: the balancer's connection, global cap only.
			releaseAccept, err := l.Admit(netip.Addr{})
			if err != nil {
				t.Fatal(err)
			}
			var src netip.Addr
			if tc.src != "" {
				src = addr(tc.src)
			}
			release, rank, err := l.AdmitProxied(src)
			if got := reason(err); got != tc.reason {
				t.Fatalf("AdmitProxied(%s): %q, want %q", tc.src, got, tc.reason)
			}
			if err != nil {
				releaseAccept()
				if st := l.Stats(); st.Startups != before.Startups || st.Sources != before.Sources {
					t.Errorf("after the refusal: %+v, before %+v", st, before)
				}
				return
			}
			if rank != 1 {
				t.Errorf("rank %d, want 1", rank)
			}
			st := l.Stats()
			if st.Startups != before.Startups+1 || st.Sources != before.Sources+1 {
				t.Errorf("admitted: startups %d sources %d, want %d and %d (one global count)", st.Startups, st.Sources, before.Startups+1, before.Sources+1)
			}
			release()
			release() // a second call does nothing
			releaseAccept()
			if st := l.Stats(); st.Startups != before.Startups || st.Sources != before.Sources {
				t.Errorf("released: %+v, before %+v", st, before)
			}
		})
	}
}
