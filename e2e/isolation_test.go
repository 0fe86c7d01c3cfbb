// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/internal/buildlab"
	"github.com/xpra-proxy/xpra-proxy/internal/proclab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// isolationTargets are the processes of a live proxy that read
// unauthenticated bytes: a waiting pre-auth spare, the TLS transport of
// an attached client (another user's connection), and the control
// process; and the relay of that connection.
type isolationTargets struct {
	spare, transport, control, relay int
}

// liveTargets starts a real supervisor with TLS, a real xpra session and
// a real `xpra attach ssl://`, and finds the processes to attack.
func liveTargets(t *testing.T) (*proxylab.Proxy, *xpralab.Server, isolationTargets) {
	t.Helper()
	xpralab.Require(t)
	testenv.Command(t, "xvfb-run")
	srv := xpralab.StartAll(t, xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=isolation"}})[0]
	cert, key := testCert(t, t.TempDir())
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--ssl-cert="+cert, "--ssl-key="+key)
	startAttach(t, fmt.Sprintf("ssl://%s:secret@%s/%s", srv.User.Username, p.Addr(), strings.TrimPrefix(srv.Display, ":")), "--ssl-server-verify-mode=none")

	var tg isolationTargets
	auth := regexp.MustCompile(`msg=authenticated .*preauth=(\d+) transport=ssl .*worker=(\d+)`)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := auth.FindStringSubmatch(p.Logs()); m != nil {
			tg.transport, _ = strconv.Atoi(m[1])
			tg.relay, _ = strconv.Atoi(m[2])
		}
		tg.spare, tg.control = 0, 0
		for _, pid := range childrenOf(t, p.Pid()) {
			args := cmdline(pid)
			switch {
			case len(args) > 1 && args[1] == "--control":
				tg.control = pid
			case len(args) > 1 && args[1] == "--preauth" && pid != tg.transport:
				tg.spare = pid
			}
		}
		if tg.transport != 0 && tg.spare != 0 && tg.control != 0 {
			return p, srv, tg
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("did not find spare, transport and control among the supervisor's children: %+v\n%s", tg, p.Logs())
	return nil, nil, tg
}

func childrenOf(t *testing.T, parent int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := strconv.Atoi(proclab.Read(pid).Status["PPid"]); ppid == parent {
			out = append(out, pid)
		}
	}
	return out
}

func cmdline(pid int) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// attacker builds the probe (sandbox/internal/probe) as the binaries are
// built, without cgo: it applies the very sandbox.Apply they call.
func attacker(t *testing.T) string {
	t.Helper()
	return filepath.Join(buildlab.Dir(t, buildlab.Step{Env: []string{"CGO_ENABLED=0"}, Pkgs: []string{"./sandbox/internal/probe"}}), "probe")
}

// attack runs the probe as the pre-auth user (with no_new_privs, which
// the probe sets), under sandbox kind ("none" or "preauth"), against
// pid, and returns what it got: the probe's answer, or the signal that
// killed it.
func attack(t *testing.T, probe, kind string, pid int, what string) string {
	t.Helper()
	u, err := user.Lookup(proxylab.PreauthUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, probe, "attack", kind, strconv.Itoa(pid), what)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	cmd.Dir = "/"
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix.SignalName(ws.Signal())
		}
		t.Fatalf("probe %s %s: %v: %s %s", kind, what, err, out, ee.Stderr)
	}
	if err != nil {
		t.Fatalf("probe %s %s: %v", kind, what, err)
	}
	_, res, _ := strings.Cut(strings.TrimSpace(string(out)), ": ")
	return res
}

// TestIsolation: code running as the pre-auth user, standing in for code
// execution in a parser of a pre-auth process, tries to take over the
// others. Without its own sandbox it meets only non-dumpable targets (and
// another uid for the control process); with the pre-auth sandbox, as a
// real compromised pre-auth process would be, every attempt kills it.
// SECURITY.md records the results.
func TestIsolation(t *testing.T) {
	testenv.Root(t)
	probe := attacker(t)
	p, srv, tg := liveTargets(t)
	t.Logf("targets: spare %d, TLS transport %d, control %d, relay %d", tg.spare, tg.transport, tg.control, tg.relay)

	// Each is confined as its kind says: filters (the transport's stacked
	// on the pre-auth one), no_new_privs, and the uids.
	preauthUID, controlUID := lookupUID(t, proxylab.PreauthUser), lookupUID(t, proxylab.ControlUser)
	for _, c := range []struct {
		name    string
		pid     int
		uid     int
		filters string
	}{{"spare", tg.spare, preauthUID, "1"}, {"transport", tg.transport, preauthUID, "2"}, {"control", tg.control, controlUID, "1"}} {
		st := proclab.Read(c.pid).Status
		if st["Seccomp"] != "2" || st["Seccomp_filters"] != c.filters || st["NoNewPrivs"] != "1" {
			t.Errorf("%s %d: Seccomp %q, filters %q (want %s), NoNewPrivs %q", c.name, c.pid, st["Seccomp"], st["Seccomp_filters"], c.filters, st["NoNewPrivs"])
		}
		if f := strings.Fields(st["Uid"]); len(f) == 0 || f[0] != strconv.Itoa(c.uid) {
			t.Errorf("%s %d: Uid %q, want %d", c.name, c.pid, st["Uid"], c.uid)
		}
	}

	attacks := []string{"ptrace", "pidfd_getfd", "process_vm_readv", "mem", "environ", "kill"}
	for _, target := range []struct {
		name string
		pid  int
	}{{"spare", tg.spare}, {"transport", tg.transport}, {"control", tg.control}} {
		for _, a := range attacks {
			t.Run(target.name+"/"+a, func(t *testing.T) {
				bare := attack(t, probe, "none", target.pid, a)
				sandboxed := attack(t, probe, "preauth", target.pid, a)
				t.Logf("%-9s %-16s  same uid, no_new_privs: %-28s  with the pre-auth sandbox: %s", target.name, a, bare, sandboxed)
				if sandboxed != "killed by SIGSYS" && !(strings.HasPrefix(sandboxed, "E") && !strings.Contains(sandboxed, "SUCCEEDED")) {
					t.Errorf("%s on the %s from a sandboxed pre-auth process: %s", a, target.name, sandboxed)
				}
				switch {
				case a == "kill" && target.name != "control":
					// The same uid may signal: only seccomp stops this.
					if !strings.Contains(bare, "SUCCEEDED") {
						t.Logf("note: kill(0) from the same uid refused: %s", bare)
					}
				case strings.Contains(bare, "SUCCEEDED"):
					t.Errorf("%s on the %s from its own uid without a sandbox: %s (it should be non-dumpable)", a, target.name, bare)
				}
			})
		}
	}
	for name, pid := range map[string]int{"spare": tg.spare, "transport": tg.transport, "control": tg.control} {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Errorf("the %s (%d) did not survive the attacks: %v", name, pid, err)
		}
	}

	// The relay is non-dumpable too, and its user's own xpra info on it
	// and xpra-proxy list still work.
	t.Run("relay: the user's own xpra info", func(t *testing.T) {
		dir := fmt.Sprintf("/run/user/%d/xpra", srv.UID)
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		out, _ := srv.Command(ctx, "info", fmt.Sprintf(":proxy-%d", tg.relay), "--socket-dir="+dir).CombinedOutput()
		if !strings.Contains(string(out), fmt.Sprintf("proxy.pid=%d", tg.relay)) {
			t.Fatalf("xpra info :proxy-%d as %s:\n%s", tg.relay, srv.User.Username, out)
		}
		c, ok := byPid(listConns(t, p), tg.relay)
		if !ok || c.User != srv.User.Username || c.Error != "" {
			t.Fatalf("xpra-proxy list: %+v (found %v)", c, ok)
		}
	})

	// A forbidden call made inside each live process kills it with
	// SIGSYS, and the supervisor says so. The call is injected with
	// ptrace by the (root) test: the kernel runs it in the target as if
	// the target's own code had made it.
	for _, k := range []struct {
		name string
		pid  int
	}{{"pre-auth process", tg.spare}, {"pre-auth process", tg.transport}, {"control process", tg.control}} {
		t.Run("SIGSYS in the "+k.name+" "+strconv.Itoa(k.pid), func(t *testing.T) {
			pattern := regexp.QuoteMeta(k.name) + ` killed by its sandbox.* pid=` + strconv.Itoa(k.pid) + ` signal=SIGSYS`
			// This test's own doing, the log scan must not fail on it: the
			// death, and for the TLS transport its end as its relay's carrier.
			p.ExpectLog(pattern)
			// (Other fields, transport= for one, may come between.)
			p.ExpectLog(`preauth=` + strconv.Itoa(k.pid) + ` .*status="signal: bad system call"`)
			injectSyscall(t, k.pid, unix.SYS_SOCKET)
			want := regexp.MustCompile(pattern)
			deadline := time.Now().Add(10 * time.Second)
			for !want.MatchString(p.Logs()) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if !want.MatchString(p.Logs()) {
				t.Fatalf("the supervisor did not log the SIGSYS death of %d (%s)", k.pid, want)
			}
			t.Logf("supervisor: %s", want.FindString(p.Logs()))
		})
	}
}

func lookupUID(t *testing.T, name string) int {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(u.Uid)
	return n
}

// injectSyscall makes pid's main thread execute system call nr: the test
// (root, CAP_SYS_PTRACE) seizes it, writes a syscall instruction at its
// instruction pointer, sets the call number and lets it run. The process
// is expected to die of it, so nothing is restored.
func injectSyscall(t *testing.T, pid int, nr uintptr) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the injection is written for amd64")
	}
	runtime.LockOSThread() // ptrace requests must come from the tracer thread
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		t.Fatalf("PTRACE_SEIZE %d as root: %v", pid, err)
	}
	if err := unix.PtraceInterrupt(pid); err != nil {
		t.Fatalf("PTRACE_INTERRUPT: %v", err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
		t.Fatalf("waiting for %d to stop: %v (%v)", pid, err, ws)
	}
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &regs); err != nil {
		t.Fatalf("PTRACE_GETREGS: %v", err)
	}
	// syscall (0f 05) at rip; the rest of the word as it was.
	word := make([]byte, 8)
	if _, err := unix.PtracePeekText(pid, uintptr(regs.Rip), word); err != nil {
		t.Fatalf("PTRACE_PEEKTEXT: %v", err)
	}
	word[0], word[1] = 0x0f, 0x05
	if _, err := unix.PtracePokeText(pid, uintptr(regs.Rip), word); err != nil {
		t.Fatalf("PTRACE_POKETEXT: %v", err)
	}
	regs.Rax = uint64(nr)
	regs.Orig_rax = ^uint64(0) // not in a system call: no restart
	regs.Rdi, regs.Rsi, regs.Rdx = unix.AF_INET, unix.SOCK_STREAM, 0
	if err := unix.PtraceSetRegs(pid, &regs); err != nil {
		t.Fatalf("PTRACE_SETREGS: %v", err)
	}
	if err := unix.PtraceCont(pid, 0); err != nil {
		t.Fatalf("PTRACE_CONT: %v", err)
	}
	// The tracer sees the death first; the supervisor, the parent, reaps.
	// A process the call did not kill runs on: it is killed after 10 s.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := unix.Wait4(pid, &ws, unix.WALL|unix.WNOHANG, nil)
		if err != nil {
			t.Fatalf("waiting for %d to die: %v", pid, err)
		}
		if got == pid && (ws.Signaled() || ws.Exited()) {
			break
		}
		if got == pid && ws.Stopped() {
			unix.PtraceCont(pid, int(ws.StopSignal()))
			continue
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%d survived a forbidden system call for 10 s (killed now)", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Fatalf("%d ended with %v, want death by SIGSYS", pid, ws)
	}
}
