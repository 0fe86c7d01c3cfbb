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
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/hostile"
	"github.com/xpra-proxy/xpra-proxy/internal/preauthload"
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
	s := preauthload.NewSampler(*pid)
	ctx, stop := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() { s.Run(ctx, 20*time.Millisecond); close(sampled) }()
	versionDone := make(chan string, 1)
	if *version {
		go func() {
			time.Sleep(300 * time.Millisecond) // while the attack is on
			start := time.Now()
			out, err := exec.Command("xpra", "version", "tcp://"+*addr+"/").CombinedOutput()
			versionDone <- fmt.Sprintf("xpra version: %v (%q, err %v)", time.Since(start).Round(time.Millisecond), strings.TrimSpace(lastLine(string(out))), err)
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
	}
	if len(res) > 0 && len(res[0].Reply) > 0 {
		fmt.Printf("first reply: %q\n", res[0].Reply)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
