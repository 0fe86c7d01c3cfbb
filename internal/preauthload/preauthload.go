// SPDX-License-Identifier: GPL-2.0-or-later

// Package preauthload sends hostile hellos (internal/hostile) to a real
// proxy from many loopback sources and measures what its pre-auth
// processes cost while they live: the e2e test of issue 12 and the
// by-hand measurement in SECURITY.md ("Pre-auth memory") share it.
package preauthload

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Result is what one hostile connection saw.
type Result struct {
	Source   string
	Took     time.Duration // from the write to the proxy's close
	Answered time.Duration // from the write to the first byte of the reply (0: none)
	Reply    []byte        // what the proxy sent (a disconnect packet)
	DialErr  error
	TimedOut bool // still open at the deadline
}

// Attack opens conns connections at once to addr, from sources in turn,
// writes input on each and reads until the proxy closes it or hold
// passes. It returns when every connection has ended.
func Attack(ctx context.Context, addr string, input []byte, sources []net.IP, conns int, hold time.Duration) []Result {
	res := make([]Result, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			r := &res[i]
			src := sources[i%len(sources)]
			r.Source = src.String()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				r.DialErr = err
				return
			}
			defer c.Close()
			start := time.Now()
			_ = c.SetDeadline(start.Add(hold))
			if _, err := c.Write(input); err != nil {
				r.DialErr = fmt.Errorf("write: %w", err)
				return
			}
			first := make([]byte, 1)
			if n, _ := c.Read(first); n == 1 {
				r.Answered = time.Since(start)
				rest, _ := io.ReadAll(io.LimitReader(c, 64<<10))
				r.Reply = append(first, rest...)
			}
			// Then the proxy closes: read on to the end.
			_, err = c.Read(first)
			r.Took = time.Since(start)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				r.TimedOut = true
			}
		})
	}
	wg.Wait()
	return res
}

// Sources returns n loopback addresses 127.0.0.first ... (Linux routes
// all of 127/8 to lo).
func Sources(first, n int) []net.IP {
	out := make([]net.IP, n)
	for i := range out {
		out[i] = net.IPv4(127, 0, byte((first+i)>>8), byte(first+i))
	}
	return out
}

// Sampler watches the pre-auth children of a supervisor.
type Sampler struct {
	mu         sync.Mutex
	peak       map[int]int64 // pid → last VmHWM seen (kB): the process's peak so far
	MaxData    int64         // largest VmData of a pre-auth process (kB); an idle spare's is ~75 MB
	MaxSum     int64         // largest sum of VmRSS of all pre-auth processes at one sample (kB)
	MaxProcs   int           // most pre-auth processes at one sample
	MinAvail   int64         // lowest MemAvailable seen (kB)
	Samples    int
	supervisor int
}

// NewSampler prepares a sampler of supervisor's pre-auth children.
func NewSampler(supervisor int) *Sampler {
	return &Sampler{peak: map[int]int64{}, supervisor: supervisor}
}

// Run samples every interval until ctx ends.
func (s *Sampler) Run(ctx context.Context, interval time.Duration) {
	for {
		s.Sample()
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Sample reads /proc once.
func (s *Sampler) Sample() {
	pids := PreauthChildren(s.supervisor)
	var sum int64
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pid := range pids {
		st := status(pid)
		if hwm := st["VmHWM"]; hwm > 0 {
			s.peak[pid] = max(s.peak[pid], hwm)
		}
		s.MaxData = max(s.MaxData, st["VmData"])
		sum += st["VmRSS"]
	}
	s.MaxSum = max(s.MaxSum, sum)
	s.MaxProcs = max(s.MaxProcs, len(pids))
	if a := MemAvailable(); s.MinAvail == 0 || a < s.MinAvail {
		s.MinAvail = a
	}
	s.Samples++
}

// Peaks returns the peak RSS (VmHWM, kB) of every pre-auth process seen.
func (s *Sampler) Peaks() map[int]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]int64, len(s.peak))
	for k, v := range s.peak {
		out[k] = v
	}
	return out
}

// PreauthChildren lists the pids of supervisor's children started with
// --preauth.
func PreauthChildren(supervisor int) []int {
	entries, _ := os.ReadDir("/proc")
	ppid := strconv.Itoa(supervisor)
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut after ')'.
		_, rest, ok := strings.Cut(string(b), ") ")
		if f := strings.Fields(rest); !ok || len(f) < 2 || f[1] != ppid {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte("--preauth")) {
			out = append(out, pid)
		}
	}
	return out
}

// status reads the kB fields of /proc/pid/status.
func status(pid int) map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, " kB")), 10, 64)
		out[k] = n
	}
	return out
}

// Status returns pid's /proc status figures in kB (VmHWM, VmRSS, VmData...).
func Status(pid int) map[string]int64 { return status(pid) }

// MemAvailable is /proc/meminfo's MemAvailable in kB.
func MemAvailable() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
