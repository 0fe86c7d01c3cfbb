// SPDX-License-Identifier: GPL-2.0-or-later

package stats

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestCounts(t *testing.T) {
	s := New(time.Unix(1700000000, 500000000))
	s.Connection("tcp", Relayed)
	s.Connection("tcp", Relayed)
	s.Connection("wss", Denied)
	s.Connection("tcp", RefusedPrefix+"penalty")
	s.Login("tcp", "file", OK)
	s.Login("tcp", "file", Failed)
	s.Login("tcp", "file", Failed)
	s.Login("unix", "", Failed)
	s.Session(OK)
	sn := s.Snapshot(Gauges{Relays: 2, Preauth: 1, Penalized: 1, Penalties: 3})
	if sn.StartTime != 1700000000.5 {
		t.Errorf("start time %v", sn.StartTime)
	}
	tests := []struct {
		name string
		got  []Count
		want []Count
	}{
		{"connections", sn.Connections, []Count{
			{[]string{"tcp", "refused-penalty"}, 1}, {[]string{"tcp", "relayed"}, 2}, {[]string{"wss", "denied"}, 1}}},
		{"logins", sn.Logins, []Count{
			{[]string{"tcp", "file", "failed"}, 2}, {[]string{"tcp", "file", "ok"}, 1}, {[]string{"unix", "none", "failed"}, 1}}},
		{"sessions", sn.Sessions, []Count{{[]string{"ok"}, 1}}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if sn.Relays != 2 || sn.Preauth != 1 || sn.Penalized != 1 || sn.Penalties != 3 {
		t.Errorf("gauges: %+v", sn)
	}
	if err := sn.Check(); err != nil {
		t.Error(err)
	}
}

func TestSetupHistogram(t *testing.T) {
	s := New(time.Now())
	for _, d := range []time.Duration{
		time.Millisecond,       // <= 0.005
		5 * time.Millisecond,   // == 0.005: the bound is inclusive
		30 * time.Millisecond,  // <= 0.05
		3 * time.Second,        // <= 5
		200 * time.Second,      // +Inf only
		120 * time.Second,      // == 120
		100 * time.Microsecond, // <= 0.005
	} {
		s.Setup(d)
	}
	h := s.Snapshot(Gauges{}).Setup
	want := map[float64]uint64{0.005: 3, 0.01: 3, 0.025: 3, 0.05: 4, 0.1: 4, 2.5: 4, 5: 5, 60: 5, 120: 6}
	for i, b := range h.Bounds {
		if w, ok := want[b]; ok && h.Buckets[i] != w {
			t.Errorf("bucket <= %v: %d, want %d", b, h.Buckets[i], w)
		}
	}
	if h.Count != 7 {
		t.Errorf("count %d, want 7", h.Count)
	}
	if sum := 0.001 + 0.005 + 0.03 + 3 + 200 + 120 + 0.0001; h.Sum < sum-1e-9 || h.Sum > sum+1e-9 {
		t.Errorf("sum %v, want %v", h.Sum, sum)
	}
}

func TestRelayBytes(t *testing.T) {
	tests := []struct {
		name                   string
		reports                [][2]int64
		fromClient, fromServer uint64
	}{
		{"none", nil, 0, 0},
		{"summed", [][2]int64{{10, 2000}, {5, 0}}, 15, 2000},
		{"negatives clipped", [][2]int64{{-7, 3}, {4, math.MinInt64}}, 4, 3},
		{"saturates", [][2]int64{{math.MaxInt64, 1}, {math.MaxInt64, 1}, {math.MaxInt64, 1}}, math.MaxUint64, 3},
	}
	for _, tt := range tests {
		s := New(time.Now())
		for _, r := range tt.reports {
			s.RelayBytes(r[0], r[1])
		}
		sn := s.Snapshot(Gauges{})
		if sn.BytesFromClient != tt.fromClient || sn.BytesFromServer != tt.fromServer {
			t.Errorf("%s: %d from client, %d from server; want %d, %d", tt.name, sn.BytesFromClient, sn.BytesFromServer, tt.fromClient, tt.fromServer)
		}
		if err := sn.Check(); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	// What the metrics process gets: a negative count is no snapshot.
	var sn Snapshot
	if err := json.Unmarshal([]byte(`{"bytes_from_client":-1}`), &sn); err == nil {
		t.Error("a negative byte count decoded")
	}
}

func TestSeriesBounded(t *testing.T) {
	s := New(time.Now())
	for i := range maxSeries + 10 {
		s.Login("tcp", fmt.Sprint("m", i), OK)
	}
	sn := s.Snapshot(Gauges{})
	if len(sn.Logins) != maxSeries+1 {
		t.Fatalf("%d series, want %d", len(sn.Logins), maxSeries+1)
	}
	var other uint64
	for _, c := range sn.Logins {
		if c.Labels[1] == "other" {
			other = c.Value
		}
	}
	if other != 10 {
		t.Errorf("other: %d, want 10", other)
	}
}

func TestConcurrent(t *testing.T) {
	s := New(time.Now())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				s.Connection("tcp", Relayed)
				s.Setup(time.Millisecond)
			}
		})
	}
	wg.Wait()
	sn := s.Snapshot(Gauges{})
	if sn.Connections[0].Value != 8000 || sn.Setup.Count != 8000 {
		t.Errorf("got %v and %d", sn.Connections, sn.Setup.Count)
	}
}

func TestCheck(t *testing.T) {
	good := func() Snapshot {
		s := New(time.Now())
		s.Login("tcp", "file", OK)
		s.Setup(time.Second)
		return s.Snapshot(Gauges{})
	}
	tests := []struct {
		name   string
		break_ func(*Snapshot)
		ok     bool
	}{
		{"whole", func(*Snapshot) {}, true},
		{"labels", func(s *Snapshot) { s.Logins[0].Labels = s.Logins[0].Labels[:2] }, false},
		{"twice", func(s *Snapshot) { s.Logins = append(s.Logins, s.Logins[0]) }, false},
		{"bounds", func(s *Snapshot) { s.Setup.Bounds = s.Setup.Bounds[1:] }, false},
		{"order", func(s *Snapshot) { s.Setup.Bounds[3] = 0 }, false},
		{"falling", func(s *Snapshot) { s.Setup.Buckets[len(s.Setup.Buckets)-1] = 0 }, false},
		{"over count", func(s *Snapshot) { s.Setup.Buckets[len(s.Setup.Buckets)-1] = 9 }, false},
	}
	for _, tt := range tests {
		sn := good()
		tt.break_(&sn)
		if err := sn.Check(); (err == nil) != tt.ok {
			t.Errorf("%s: Check() = %v", tt.name, err)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	s := New(time.Now())
	s.Connection("ssl", Closed)
	s.Setup(10 * time.Millisecond)
	s.RelayBytes(300, 70000)
	sn := s.Snapshot(Gauges{Relays: 1})
	b, err := json.Marshal(sn)
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sn, back) {
		t.Errorf("round trip: %+v != %+v", back, sn)
	}
}
