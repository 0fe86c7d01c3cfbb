// SPDX-License-Identifier: GPL-2.0-or-later

// Command probe stands in for code execution inside a sandboxed process:
// tests build it (without cgo, as the real binaries) and run it to check
// that the sandbox package confines what it should, with the very
// function the real binaries call.
//
//	probe workload KIND [DIR]      apply KIND (read access to DIR), then do
//	                               what a Go program does (threads, GC,
//	                               timers, reading DIR) and print "ok"
//	probe forbid KIND SYSCALL      apply KIND, then make one forbidden call;
//	                               expected to die of SIGSYS
//	probe hold KIND                apply KIND, print "ready", then wait (a
//	                               target holding a secret in its memory)
//	probe attack KIND PID WHAT     apply KIND (or none), then try WHAT
//	                               against PID; prints "WHAT: result"
//
// KIND is preauth, transport (applied on top of preauth, as the real
// process does), control, or none.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/sandbox"
)

// textStart is where amd64 Go programs built without -buildmode=pie map
// their code: an address every target has mapped.
const textStart = 0x401000

// Secret is what a hold process keeps in its memory and environment,
// for the attacks to look for.
const Secret = "PROBE-SECRET-7f3a9c"

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: probe workload|forbid|hold|attack KIND ...")
		os.Exit(2)
	}
	mode, kind := os.Args[1], os.Args[2]
	var dirs []string
	if mode == "workload" && len(os.Args) > 3 {
		dirs = os.Args[3:4]
	}
	if err := apply(kind, dirs); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
	switch mode {
	case "workload":
		workload(dirs)
	case "forbid":
		forbid(os.Args[3])
	case "hold":
		secret := []byte(Secret) // kept live below
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
			runtime.KeepAlive(secret)
		}
	case "attack":
		pid, _ := strconv.Atoi(os.Args[3])
		fmt.Printf("%s: %s\n", os.Args[4], attack(pid, os.Args[4]))
	default:
		os.Exit(2)
	}
}

func apply(kind string, dirs []string) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	switch kind {
	case "none":
		return nil
	case "transport":
		if _, err := sandbox.Apply(sandbox.Preauth, sandbox.Options{ReadDirs: dirs}); err != nil {
			return err
		}
		start := time.Now()
		_, err := sandbox.Apply(sandbox.Transport, sandbox.Options{})
		fmt.Fprintf(os.Stderr, "probe: applied transport in %s\n", time.Since(start))
		return err
	default:
		start := time.Now()
		r, err := sandbox.Apply(sandbox.Kind(kind), sandbox.Options{ReadDirs: dirs})
		fmt.Fprintf(os.Stderr, "probe: applied %s in %s: landlock ABI %d (%v), %d system calls\n", kind, time.Since(start), r.LandlockABI, r.LandlockErr, r.SeccompSyscalls)
		return err
	}
}

// workload does what the runtime does in a busy process: many threads,
// collections, returned memory, timers, preemption.
func workload(dirs []string) {
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			b := make([][]byte, 0, 64)
			for j := range 64 {
				b = append(b, make([]byte, 64<<10+i+j))
			}
			deadline := time.Now().Add(50 * time.Millisecond)
			for time.Now().Before(deadline) { // preempted by SIGURG
			}
			runtime.KeepAlive(b)
		})
	}
	wg.Wait()
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(20 * time.Millisecond)
	for _, d := range dirs {
		if _, err := os.ReadDir(d); err != nil {
			fmt.Println("reading", d, "failed:", err)
			os.Exit(1)
		}
	}
	if len(dirs) > 0 {
		// Outside the allowed directory: Landlock refuses (when the
		// kernel has it).
		_, err := os.ReadFile("/etc/passwd")
		fmt.Println("outside:", errName(err))
	}
	fmt.Println("ok")
}

func forbid(name string) {
	var err error
	switch name {
	case "ptrace":
		_, _, e := unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		err = errno(e)
	case "kill":
		err = unix.Kill(1, 0)
	case "execve":
		err = unix.Exec("/bin/true", []string{"true"}, nil)
	case "fork":
		_, _, e := unix.RawSyscall(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0)
		err = errno(e)
	case "open-write":
		_, err = unix.Open("/tmp/probe-must-not-exist", unix.O_WRONLY|unix.O_CREAT, 0o600)
	case "socket":
		_, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	case "pidfd_open":
		_, err = unix.PidfdOpen(1, 0)
	case "mprotect-exec":
		b, e := unix.Mmap(-1, 0, 4096, unix.PROT_READ, unix.MAP_ANON|unix.MAP_PRIVATE)
		if e == nil {
			err = unix.Mprotect(b, unix.PROT_READ|unix.PROT_EXEC)
		}
	case "setuid":
		_, _, e := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0)
		err = errno(e)
	default:
		fmt.Println("unknown syscall", name)
		os.Exit(2)
	}
	fmt.Printf("%s returned: %v\n", name, err)
	os.Exit(0)
}

// attack tries one way into pid's memory or descriptors.
func attack(pid int, what string) string {
	switch what {
	case "ptrace":
		_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, 0, 0, 0)
		if e == 0 {
			return "SUCCEEDED (seized)"
		}
		return errName(e)
	case "pidfd_getfd":
		pfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return "pidfd_open: " + errName(err)
		}
		var got []int
		var last error
		for fd := 0; fd < 64; fd++ {
			n, err := unix.PidfdGetfd(pfd, fd, 0)
			if err == nil {
				got = append(got, fd)
				unix.Close(n)
			} else if !errors.Is(err, unix.EBADF) {
				last = err
			}
		}
		if len(got) > 0 {
			return fmt.Sprintf("SUCCEEDED (took fds %v)", got)
		}
		return errName(last)
	case "process_vm_readv":
		buf := make([]byte, 4096)
		local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
		// The text of a non-PIE Go program (as this one and ours are
		// built) starts at textStart in every process.
		remote := []unix.RemoteIovec{{Base: textStart, Len: 4096}}
		_, err := unix.ProcessVMReadv(pid, local, remote, 0)
		if err == nil {
			return "SUCCEEDED (read its memory)"
		}
		return errName(err)
	case "mem", "environ":
		f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, what))
		if err != nil {
			return errName(err)
		}
		defer f.Close()
		b := make([]byte, 4096)
		if what == "mem" {
			_, err = f.ReadAt(b, textStart)
		} else {
			_, err = f.Read(b)
		}
		if err != nil {
			return "opened, read: " + errName(err)
		}
		return "SUCCEEDED (read it)"
	case "kill":
		// Signal 0: delivery is checked, nothing is sent, so the target
		// survives to be attacked again if this is allowed.
		if err := unix.Kill(pid, 0); err != nil {
			return errName(err)
		}
		return "SUCCEEDED (may signal it)"
	}
	return "unknown attack"
}

func errno(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func errName(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	if err == nil {
		return "no error"
	}
	return err.Error()
}
