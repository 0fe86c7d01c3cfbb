// SPDX-License-Identifier: GPL-2.0-or-later

// Command preauthmem measures what hostile hellos cost a running proxy's
// pre-auth processes (issue 12; figures in SECURITY.md, "Pre-auth
// memory"): it opens -conns connections at once from -sources loopback
// addresses, sends each the chosen internal/hostile input, samples the
// supervisor's pre-auth children in /proc while they live, and times a
// real `xpra version` through the proxy meanwhile. Run as root beside a
// proxy started by hand:
//
//	go run ./bench/preauthmem -addr=127.0.0.1:14500 -pid=$(pgrep -o -x xpra-proxy) -conns=200 -sources=20
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/hostile"
	"github.com/xpra-proxy/xpra-proxy/internal/preauthload"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:14500", "the proxy's TCP port")
	pid := flag.Int("pid", 0, "the supervisor's pid")
	variant := flag.String("variant", "rencode+zlib 4095 KiB", "which hostile input (see -list)")
	list := flag.Bool("list", false, "list the inputs")
	conns := flag.Int("conns", 1, "connections at once")
	sources := flag.Int("sources", 1, "loopback sources, 127.0.0.10 onwards")
	hold := flag.Duration("hold", 15*time.Second, "how long a connection waits for the proxy to close it")
	version := flag.Bool("xpra-version", true, "time `xpra version` through the proxy during the attack")
	versionAfter := flag.Duration("version-after", 300*time.Millisecond, "when `xpra version` starts, after the attack")
	sample := flag.Duration("sample", 20*time.Millisecond, "how often /proc is read for the pre-auth processes' memory (0: never; the sampling costs this process CPU the real client then lacks)")
	flag.Parse()
	inputs, err := hostile.Inputs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var in *hostile.Input
	for i := range inputs {
		if *list {
			fmt.Printf("%q: %d wire bytes\n", inputs[i].Name, len(inputs[i].Wire))
		}
		if inputs[i].Name == *variant {
			in = &inputs[i]
		}
	}
	if *list {
		return
	}
	if in == nil || *pid == 0 {
		fmt.Fprintln(os.Stderr, "need -pid and a -variant from -list")
		os.Exit(2)
	}
	availBefore := preauthload.MemAvailable()
	cpuBefore, ownBefore, err := childrenCPU(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := preauthload.NewSampler(*pid)
	ctx, stop := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	if *sample > 0 {
		go func() { s.Run(ctx, *sample); close(sampled) }()
	} else {
		close(sampled)
	}
	versionDone := make(chan string, 1)
	if *version {
		go func() {
			time.Sleep(*versionAfter) // while the attack is on
			start := time.Now()
			out, err := exec.Command("xpra", "version", "tcp://"+*addr+"/").CombinedOutput()
			versionDone <- fmt.Sprintf("xpra version: %v (%q, err %v)", time.Since(start).Round(time.Millisecond), strings.TrimSpace(lastLine(string(out))), err)
		}()
	}
	probeDone := make(chan string, 1)
	if *version {
		go func() {
			time.Sleep(*versionAfter)
			probeDone <- probeVersion(*addr)
		}()
	}
	start := time.Now()
	res := preauthload.Attack(context.Background(), *addr, in.Wire, preauthload.Sources(10, *sources), *conns, *hold)
	took := time.Since(start)
	stop()
	<-sampled
	var times, answers []time.Duration
	var dialErrs, timedOut, answered int
	for _, r := range res {
		switch {
		case r.DialErr != nil:
			dialErrs++
		case r.TimedOut:
			timedOut++
		default:
			times = append(times, r.Took)
		}
		if len(r.Reply) > 0 {
			answered++
			answers = append(answers, r.Answered)
		}
	}
	slices.Sort(times)
	slices.Sort(answers)
	peaks := s.Peaks()
	var hwm []int64
	for _, v := range peaks {
		hwm = append(hwm, v)
	}
	slices.Sort(hwm)
	fmt.Printf("input %q: %d wire bytes, %d empty lists\n", in.Name, len(in.Wire), in.Lists)
	fmt.Printf("%d connections from %d sources in %v: %d closed by the proxy (%d with a reply), %d still open after %v, %d dial/write errors\n",
		*conns, *sources, took.Round(time.Millisecond), len(times), answered, timedOut, *hold, dialErrs)
	if len(times) > 0 {
		fmt.Printf("time to close: min %v, median %v, max %v\n", times[0].Round(time.Millisecond),
			times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
	}
	if len(answers) > 0 {
		fmt.Printf("time to the reply: min %v, median %v, max %v\n", answers[0].Round(time.Millisecond),
			answers[len(answers)/2].Round(time.Millisecond), answers[len(answers)-1].Round(time.Millisecond))
	}
	if len(hwm) > 0 {
		fmt.Printf("pre-auth processes seen: %d; peak RSS (VmHWM) per process: min %d kB, median %d kB, max %d kB\n",
			len(hwm), hwm[0], hwm[len(hwm)/2], hwm[len(hwm)-1])
	}
	fmt.Printf("largest VmData of a pre-auth process: %d kB (what RLIMIT_DATA counts)\n", s.MaxData)
	fmt.Printf("largest sum of pre-auth RSS at one sample: %d kB (%d processes at most, %d samples)\n", s.MaxSum, s.MaxProcs, s.Samples)
	fmt.Printf("MemAvailable: before %d kB, lowest during %d kB\n", availBefore, s.MinAvail)
	if *version {
		fmt.Println(<-versionDone)
		fmt.Println(<-probeDone)
	}
	// The supervisor's children's CPU counts a child once reaped: wait
	// for the pre-auth processes to be gone (the spare aside).
	for deadline := time.Now().Add(10 * time.Second); len(preauthload.PreauthChildren(*pid)) > 1 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if cpuAfter, ownAfter, err := childrenCPU(*pid); err == nil {
		fmt.Printf("supervisor's reaped children's CPU (cutime+cstime): %v for %d connections, %v each\n",
			cpuAfter-cpuBefore, *conns, ((cpuAfter - cpuBefore) / time.Duration(*conns)).Round(100*time.Microsecond))
		fmt.Printf("supervisor's own CPU (utime+stime): %v\n", ownAfter-ownBefore)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		fmt.Printf("this bench's own CPU: %v\n", (time.Duration(ru.Utime.Nano() + ru.Stime.Nano())).Round(time.Millisecond))
	}
	if len(res) > 0 && len(res[0].Reply) > 0 {
		fmt.Printf("first reply: %q\n", res[0].Reply)
	}
}

// probeVersion sends a version request hello from 127.0.0.2 (a source
// of its own) and times the answer: the proxy's side of a legitimate
// request, without the real client's own start-up.
func probeVersion(addr string) string {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 30 * time.Second}
	start := time.Now()
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return fmt.Sprintf("version probe: %v", err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := conn.New(nc)
	hello := conn.Packet{"hello", value.Dict{{Key: "version", Value: "3.1.3"}, {Key: "request", Value: "version"}}}
	if err := c.WritePacket(hello); err != nil {
		return fmt.Sprintf("version probe: %v", err)
	}
	p, err := c.ReadPacket()
	if err != nil {
		return fmt.Sprintf("version probe: %v", err)
	}
	return fmt.Sprintf("version probe from 127.0.0.2: %v answer after %v", p[0], time.Since(start).Round(time.Millisecond))
}

// childrenCPU is the user and system CPU time of pid's reaped children
// (/proc/PID/stat cutime and cstime) and its own (utime and stime).
func childrenCPU(pid int) (children, own time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("supervisor's CPU: %w", err)
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest) // from field 3 (state) on
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var ticks [4]int64
	for i := range ticks {
		if ticks[i], err = strconv.ParseInt(f[11+i], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	const clkTck = 100 // USER_HZ on Linux
	tick := time.Second / clkTck
	return time.Duration(ticks[2]+ticks[3]) * tick, time.Duration(ticks[0]+ticks[1]) * tick, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
