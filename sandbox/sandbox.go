// SPDX-License-Identifier: GPL-2.0-or-later

// Package sandbox confines a process that reads unauthenticated bytes,
// the way sshd confines its pre-auth child, so that code execution in one
// of its parsers owns nothing but that process:
//
//   - PR_SET_DUMPABLE 0: another process of the same uid can no longer
//     ptrace it, read /proc/PID/mem or /proc/PID/environ, take its
//     descriptors with pidfd_getfd or read it with process_vm_readv (all
//     of those check "may ptrace", which a non-dumpable target refuses to
//     anyone without CAP_SYS_PTRACE).
//   - Landlock, where the kernel has it: read-only access to the paths the
//     kind needs (the HTML5 client) and nothing else, no TCP bind, TCP
//     connect only to the ports given (tcp-proxy), no signals and no
//     abstract unix sockets outside the process.
//   - A seccomp-BPF allow-list per kind (filters.go), default action
//     kill-process: a forbidden system call ends the process with SIGSYS,
//     which its supervisor logs.
//
// Apply is called after the process has taken its named descriptors and
// read its start-up documents, before the first untrusted byte. It needs
// no_new_privs (child.Spec.Take sets it) and must run in a
// program built without cgo: Landlock before ABI 8 is applied to every
// thread with syscall.AllThreadsSyscall, which cgo programs cannot use.
package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Kind names a confined process kind; each has its own allow-list.
type Kind string

const (
	// Preauth is a pre-auth process: sniffing, TLS, HTTP, WebSocket, the
	// hello and the challenge, the HTML5 client's files.
	Preauth Kind = "preauth"
	// Transport is a pre-auth process that carries an authenticated TLS
	// or WebSocket connection: its filter is stacked on the pre-auth one
	// after the hand-over and allows only moving bytes.
	Transport Kind = "transport"
	// Control serves the supervisor's :proxy socket.
	Control Kind = "control"
	// LDAP is the LDAP helper: TLS and LDAP on the directory connection
	// the supervisor opened for it; it opens nothing itself.
	LDAP Kind = "ldap"
	// Directory is the shared directory's helper (PostgreSQL): it dials
	// the database itself (TCP to the URI's ports, or its unix socket),
	// resolving names with the files the resolver reads.
	Directory Kind = "directory"
)

// Options are what a kind may reach beyond its own descriptors.
type Options struct {
	// ReadDirs are directories readable (with everything below them):
	// the HTML5 client and where its symlinks lead.
	ReadDirs []string
	// ReadFiles are single files readable (the resolver's, for a
	// tcp-proxy target given by name).
	ReadFiles []string
	// ConnectTCP are the TCP ports the process may connect to (the
	// tcp-proxy target's); with none it may open no socket at all.
	ConnectTCP []uint16
	// ConnectUnix is a unix socket path a Control process may connect
	// to: the metrics process asking the shared encoder for its counters
	// (encoder-socket). Seccomp then allows socket(AF_UNIX) and connect;
	// Landlock (ABI 9+, which restricts connecting by path) allows it
	// beneath the socket directory's parent, which outlives the directory
	// (systemd makes it anew at each encoder start, and Landlock rules
	// hold inodes). The process checks the listener's uid itself.
	ConnectUnix string
	Log         *slog.Logger
}

// Report says what was applied.
type Report struct {
	Kind            Kind
	LandlockABI     int   // the kernel's Landlock ABI; 0 when it has none
	LandlockErr     error // why Landlock was not applied, if it was not
	SeccompSyscalls int   // system calls on the allow-list
}

// Apply confines the calling process as kind k (Transport: a Preauth
// process, after its hand-over; the filters stack). An error means the
// process is not confined as it should be and must not go on; a kernel
// without Landlock is not an error (it is logged).
func Apply(k Kind, o Options) (Report, error) {
	r := Report{Kind: k}
	// A transport was a pre-auth process: it is non-dumpable, has
	// no_new_privs and its Landlock domain already, and its pre-auth
	// filter no longer allows those prctl calls.
	stacked := k == Transport
	// The local time zone is read lazily, from /etc/localtime, the first
	// time a log line is formatted: read it now, while files may be read.
	_ = time.Local.String()
	if !stacked {
		// First: from here on no process of our uid can look inside.
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			return r, fmt.Errorf("sandbox: PR_SET_DUMPABLE: %w", err)
		}
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return r, fmt.Errorf("sandbox: no_new_privs: %w", err)
		}
		var err error
		r.LandlockABI, r.LandlockErr, err = applyLandlock(o)
		if err != nil {
			return r, err
		}
	}
	rules, err := Rules(k, o)
	if err != nil {
		return r, err
	}
	policy, n := policyOf(rules)
	r.SeccompSyscalls = n
	// TSync: the filter covers every thread the runtime has started (and,
	// inherited, every later one), not only the caller's.
	f := seccomp.Filter{NoNewPrivs: !stacked, Flag: seccomp.FilterFlagTSync, Policy: policy}
	if err := seccomp.LoadFilter(f); err != nil {
		return r, fmt.Errorf("sandbox: seccomp filter for %s: %w", k, err)
	}
	if o.Log != nil {
		args := []any{"kind", k, "dumpable", 0, "seccomp_syscalls", n, "landlock_abi", r.LandlockABI}
		if r.LandlockErr != nil {
			args = append(args, "landlock", r.LandlockErr.Error())
		}
		if !stacked {
			args = append(args, "read_dirs", o.ReadDirs, "connect_tcp", o.ConnectTCP)
		}
		o.Log.Info("sandbox applied", args...)
	}
	return r, nil
}

// landlockConfig is the newest ABI this package has a rule set for. V10
// would also restrict UDP, which the resolver needs for a tcp-proxy
// target given by name; it comes with rules for that.
var landlockConfig = landlock.V9

// applyLandlock restricts the file system to o.ReadDirs and o.ReadFiles
// read-only, TCP to connecting to o.ConnectTCP, and signals and abstract
// unix sockets to the process itself. Best effort: on an older kernel
// what it knows is applied, on one without Landlock nothing (skipped says
// why); failed is a kernel with Landlock that refused the rules.
func applyLandlock(o Options) (abi int, skipped, failed error) {
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil || abi < 1 {
		if err == nil {
			err = errors.New("landlock ABI 0")
		}
		return 0, fmt.Errorf("no Landlock on this kernel: %w", err), nil
	}
	var rules []landlock.Rule
	if dirs := existing(o.ReadDirs); len(dirs) > 0 {
		rules = append(rules, landlock.RODirs(dirs...))
	}
	if files := existing(o.ReadFiles); len(files) > 0 {
		rules = append(rules, landlock.ROFiles(files...))
	}
	for _, p := range o.ConnectTCP {
		rules = append(rules, landlock.ConnectTCP(p))
	}
	if o.ConnectUnix != "" {
		rules = append(rules, landlock.PathAccess(llsys.AccessFSResolveUnix, filepath.Dir(filepath.Dir(o.ConnectUnix))).IgnoreIfMissing())
	}
	if err := landlockConfig.BestEffort().Restrict(rules...); err != nil {
		return abi, nil, fmt.Errorf("sandbox: landlock (ABI %d): %w", abi, err)
	}
	return abi, nil, nil
}

// existing drops the paths this system does not have (a link root of the
// HTML5 client that is not installed): Landlock refuses a rule for them.
func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}
