// SPDX-License-Identifier: GPL-2.0-or-later

package sandbox

import (
	"fmt"
	"os"
	"slices"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// Rule allows one system call, when every condition on its arguments
// holds (several Rules for one call: any of them). Why is written into
// ARCHITECTURE.md, which TestFiltersDocumented keeps in step.
type Rule struct {
	Name string
	Args []seccomp.Condition
	Why  string
}

func eq(arg uint32, v uint64) seccomp.Condition {
	return seccomp.Condition{Argument: arg, Operation: seccomp.Equal, Value: v}
}

func bitsSet(arg uint32, v uint64) seccomp.Condition {
	return seccomp.Condition{Argument: arg, Operation: seccomp.BitsSet, Value: v}
}

func bitsNotSet(arg uint32, v uint64) seccomp.Condition {
	return seccomp.Condition{Argument: arg, Operation: seccomp.BitsNotSet, Value: v}
}

// runtimeRules are what the Go runtime and the net and os packages call
// in a running program that opens nothing: threads, memory, signals to
// its own threads, the poller, time. Not here, on purpose: kill, tkill,
// tgkill to another process, ptrace, process_vm_readv/writev, pidfd_*,
// execve/execveat, fork/vfork and clone without CLONE_THREAD, mprotect
// and mmap with PROT_EXEC, any open, socket, connect, bind, listen,
// ioctl, setuid & co, mount, bpf, perf_event_open, keyctl, io_uring.
func runtimeRules() []Rule {
	pid := uint64(os.Getpid())
	rs := []Rule{
		{Name: "read", Why: "reads from its descriptors"},
		{Name: "write", Why: "writes to its descriptors (sockets, stderr for logs)"},
		{Name: "readv", Why: "the net package's buffered reads"},
		{Name: "writev", Why: "the net package's buffered writes (net.Buffers)"},
		{Name: "pread64", Why: "the runtime re-reads the cgroup CPU limit from descriptors it opened at start (GOMAXPROCS)"},
		{Name: "lseek", Why: "the same cgroup files, and os.File reads"},
		{Name: "close", Why: "closing descriptors"},
		{Name: "mmap", Args: []seccomp.Condition{bitsNotSet(2, unix.PROT_EXEC)}, Why: "the Go heap and goroutine stacks; never executable"},
		{Name: "munmap", Why: "returning heap to the kernel"},
		{Name: "madvise", Why: "the scavenger returning unused heap pages (MADV_DONTNEED/FREE)"},
		{Name: "futex", Why: "sleeping and waking runtime threads"},
		{Name: "sched_yield", Why: "the runtime's spin loops"},
		{Name: "nanosleep", Why: "runtime usleep (sysmon)"},
		{Name: "clock_gettime", Why: "time, when the vDSO falls back to the system call"},
		{Name: "gettimeofday", Why: "the same fallback"},
		{Name: "rt_sigaction", Why: "the runtime installs signal handlers (also for new threads)"},
		{Name: "rt_sigprocmask", Why: "masking signals around thread creation"},
		{Name: "rt_sigreturn", Why: "returning from a signal handler"},
		{Name: "sigaltstack", Why: "each runtime thread's signal stack"},
		{Name: "clone", Args: []seccomp.Condition{bitsSet(0, unix.CLONE_THREAD)}, Why: "new runtime threads only: CLONE_THREAD must be set, so no fork"},
		{Name: "exit", Why: "a runtime thread ends"},
		{Name: "exit_group", Why: "the process ends"},
		{Name: "gettid", Why: "the runtime's thread ids"},
		{Name: "getpid", Why: "the runtime signals its own threads with tgkill(getpid(), ...)"},
		{Name: "tgkill", Args: []seccomp.Condition{eq(0, pid)}, Why: "goroutine preemption (SIGURG) and crash signals to its own threads; the thread group must be this process"},
		{Name: "kill", Args: []seccomp.Condition{eq(0, pid)}, Why: "the runtime re-raises a fatal signal on itself (raiseproc); only its own pid"},
		{Name: "sched_getaffinity", Why: "the runtime re-checks the CPUs it may use (GOMAXPROCS)"},
		{Name: "getrandom", Why: "crypto/rand and the runtime's own seed"},
		{Name: "epoll_create1", Why: "the network poller"},
		{Name: "epoll_ctl", Why: "the network poller"},
		{Name: "epoll_pwait", Why: "the network poller"},
		{Name: "eventfd2", Why: "waking the network poller"},
		{Name: "prlimit64", Args: []seccomp.Condition{eq(0, 0)}, Why: "reading its own limits (pid 0 only: not another process's)"},
		{Name: "uname", Why: "os.Hostname and kernel version checks"},
		{Name: "restart_syscall", Why: "the kernel restarts a sleep interrupted by a signal"},
		{Name: "getuid", Why: "harmless identity reads (os/user fallbacks)"},
		{Name: "geteuid", Why: "harmless identity reads"},
		{Name: "getgid", Why: "harmless identity reads"},
		{Name: "getegid", Why: "harmless identity reads"},
		{Name: "fstat", Why: "os.File.Stat on its own descriptors"},
		{Name: "newfstatat", Why: "os.File.Stat (fstatat with AT_EMPTY_PATH)"},
		{Name: "getsockopt", Why: "SO_ERROR, SO_PEERCRED, SO_TYPE on its sockets"},
		{Name: "setsockopt", Why: "TCP_NODELAY, keep-alive, buffer sizes on its sockets"},
		{Name: "getsockname", Why: "net.FileConn and net.FileListener name their sockets"},
		{Name: "getpeername", Why: "the same"},
		{Name: "shutdown", Why: "half-closing a connection (CloseWrite, after close_notify)"},
		{Name: "recvfrom", Why: "reading its sockets"},
		{Name: "sendto", Why: "writing its sockets"},
		{Name: "recvmsg", Why: "ipc messages with SO_PASSCRED and SCM_RIGHTS from the supervisor"},
		{Name: "sendmsg", Why: "ipc messages to the supervisor, a memfd or socket attached"},
	}
	rs = append(rs, archRules()...)
	// fcntl: only commands on its own descriptors. Not F_SETOWN/F_SETSIG
	// (SIGIO to another process), not locks or leases.
	for _, c := range []struct {
		cmd  uint64
		name string
	}{
		{unix.F_GETFD, "F_GETFD"}, {unix.F_SETFD, "F_SETFD"}, {unix.F_GETFL, "F_GETFL"}, {unix.F_SETFL, "F_SETFL"},
		{unix.F_DUPFD_CLOEXEC, "F_DUPFD_CLOEXEC"}, {unix.F_GET_SEALS, "F_GET_SEALS"},
	} {
		rs = append(rs, Rule{Name: "fcntl", Args: []seccomp.Condition{eq(1, c.cmd)}, Why: c.name + ": non-blocking mode, close-on-exec, dup, seal checks"})
	}
	return rs
}

// writeFlags are the open flags that could change a file.
const writeFlags = unix.O_WRONLY | unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC | unix.O_APPEND

// Rules is kind k's allow-list with options o.
func Rules(k Kind, o Options) ([]Rule, error) {
	rs := runtimeRules()
	switch k {
	case Control:
		rs = append(rs,
			Rule{Name: "accept4", Why: "accepting on the :proxy socket the supervisor bound"},
		)
		if o.ConnectUnix != "" {
			rs = append(rs,
				Rule{Name: "socket", Args: []seccomp.Condition{eq(0, unix.AF_UNIX)}, Why: "metrics with encoder-socket only: a unix socket to ask the shared encoder for its counters"},
				Rule{Name: "connect", Why: "metrics with encoder-socket only: to the encoder's socket"},
			)
		}
	case LDAP:
		// Only the runtime's calls: the helper reads and writes the two
		// descriptors it was given and opens nothing (no socket, no file).
	case Directory:
		rs = append(rs,
			Rule{Name: "socket", Args: []seccomp.Condition{eq(0, unix.AF_INET)}, Why: "directory: connections to the database (and the resolver's UDP); Landlock limits TCP to its ports"},
			Rule{Name: "socket", Args: []seccomp.Condition{eq(0, unix.AF_INET6)}, Why: "directory: the same over IPv6"},
			Rule{Name: "socket", Args: []seccomp.Condition{eq(0, unix.AF_UNIX)}, Why: "directory: a database on a unix socket"},
			Rule{Name: "connect", Why: "directory: the database and the resolver"},
			Rule{Name: "openat", Args: []seccomp.Condition{bitsNotSet(2, writeFlags)}, Why: "directory: the resolver's files (/etc/hosts, resolv.conf, nsswitch.conf), read-only (Landlock limits which)"},
		)
	case Preauth, Transport:
		rs = append(rs,
			Rule{Name: "prctl", Args: []seccomp.Condition{eq(0, unix.PR_SET_PDEATHSIG)}, Why: "a process that becomes a transport clears its parent-death signal"},
		)
		if k == Transport {
			break // after the hand-over it only moves bytes
		}
		rs = append(rs,
			Rule{Name: "openat", Args: []seccomp.Condition{bitsNotSet(2, writeFlags)}, Why: "the HTML5 client's files, read-only (Landlock limits where); no write, create, truncate or append flag"},
			Rule{Name: "readlinkat", Why: "resolving symlinks in the HTML5 client directory (os.Root, EvalSymlinks)"},
			Rule{Name: "getdents64", Why: "reading directories of the HTML5 client"},
			Rule{Name: "sendfile", Why: "plain HTTP: the net package sends a file to a TCP socket with sendfile"},
			Rule{Name: "seccomp", Args: []seccomp.Condition{eq(0, unix.SECCOMP_SET_MODE_FILTER)}, Why: "stacking the transport filter after the hand-over (a filter can only take away)"},
			Rule{Name: "memfd_create", Why: "the handover memfd for the relay"},
			Rule{Name: "fcntl", Args: []seccomp.Condition{eq(1, unix.F_ADD_SEALS)}, Why: "F_ADD_SEALS: sealing the handover memfd"},
		)
		if len(o.ConnectTCP) > 0 {
			rs = append(rs,
				Rule{Name: "socket", Args: []seccomp.Condition{eq(0, unix.AF_INET)}, Why: "tcp-proxy only: dialling the target (and the resolver's UDP); Landlock limits TCP to its port"},
				Rule{Name: "socket", Args: []seccomp.Condition{eq(0, unix.AF_INET6)}, Why: "tcp-proxy only: the same over IPv6"},
				Rule{Name: "connect", Why: "tcp-proxy only: the target and the resolver"},
				Rule{Name: "splice", Why: "tcp-proxy only: io.Copy between two TCP sockets splices"},
				Rule{Name: "pipe2", Why: "tcp-proxy only: splice's pipe"},
				Rule{Name: "fcntl", Args: []seccomp.Condition{eq(1, unix.F_SETPIPE_SZ)}, Why: "tcp-proxy only: F_SETPIPE_SZ, the size of splice's own pipe"},
			)
		}
	default:
		return nil, fmt.Errorf("sandbox: no filter for kind %q", k)
	}
	return rs, nil
}

// policyOf turns rules into one allow group; everything else kills the
// process (SIGSYS). It returns how many distinct calls are allowed.
func policyOf(rules []Rule) (seccomp.Policy, int) {
	g := seccomp.SyscallGroup{Action: seccomp.ActionAllow}
	var names []string
	for _, r := range rules {
		if !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
		}
		if len(r.Args) == 0 {
			g.Names = append(g.Names, r.Name)
			continue
		}
		g.NamesWithCondtions = append(g.NamesWithCondtions, seccomp.NameWithConditions{Name: r.Name, Conditions: r.Args})
	}
	return seccomp.Policy{DefaultAction: seccomp.ActionKillProcess, Syscalls: []seccomp.SyscallGroup{g}}, len(names)
}
