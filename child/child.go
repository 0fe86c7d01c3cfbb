// SPDX-License-Identifier: GPL-2.0-or-later

// Package child is the contract of every process xpra-proxy execs, in one
// place for both ends: the parent builds the command from a Spec
// (Command), and the child's main takes its descriptors from the same
// Spec (Take) and confines itself as it says (Spec.Sandbox). A descriptor
// name, an environment variable or a credential rule changed here changes
// for both sides at once (tailscale's incubator keeps its exec contract
// the same way).
//
// It imports neither the sandbox nor anything a child parses, so that the
// supervisor, which links it, stays free of both (TestSupervisorImports);
// the child's main applies the sandbox named in its Spec.
package child

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"github.com/xpra-proxy/xpra-proxy/memlimit"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
)

// Identity is who a child runs as.
type Identity string

const (
	// AsRoot: the parent's identity, root (PAM helper).
	AsRoot Identity = "root"
	// AsPreauthUser: the unprivileged pre-auth user (xpra-proxy, else nobody).
	AsPreauthUser Identity = "pre-auth user"
	// AsControlUser: the control process's own user (xpra-proxy-control),
	// else the pre-auth user.
	AsControlUser Identity = "control user"
	// AsSessionUser: the session's owner with its groups.
	AsSessionUser Identity = "session user"
	// AsEncoderUser: the encoder's system user with its groups.
	AsEncoderUser Identity = "encoder user"
	// AsLDAPUser: the LDAP helper's own user (xpra-proxy-ldap), no
	// groups; never the pre-auth user (supervisor/auth checks).
	AsLDAPUser Identity = "ldap user"
	// AsDirectoryUser: the directory helper's own user
	// (xpra-proxy-directory), no groups.
	AsDirectoryUser Identity = "directory user"
)

// Spec is one kind of child.
type Spec struct {
	Kind string
	// Mode are the first arguments, naming the kind in ps (the programs
	// that have several modes select it with them).
	Mode []string
	// Fds are the named descriptors always passed, numbered from 3 in
	// this order; Optional may follow (in their order) when the parent
	// passes them.
	Fds      []string
	Optional []string
	// Env is the environment the parent sets; the variables of a
	// particular launch (Launch.Env) come first, so these win.
	Env []string
	// Runs is the identity; for all but AsRoot the parent must pass a
	// non-root credential (when it is root itself), and the child sets
	// no_new_privs and refuses to run as root.
	Runs Identity
	// Setsid: a session of its own, so a terminal's signals or a kill of
	// the parent's group do not reach it.
	Setsid bool
	// Pdeathsig is sent to it when the parent dies (0: it outlives the
	// parent, as relays do across a supervisor restart).
	Pdeathsig syscall.Signal
	// Sandbox names the sandbox.Kind the child applies before the first
	// untrusted byte ("": none). The transport stage of a pre-auth
	// process stacks Transport on it after the hand-over.
	Sandbox string
	// Memory is the child's memory ceiling (nil: none): the parent sets
	// its GOMEMLIMIT, the child applies the rest (RLIMIT_DATA) with
	// memlimit.Apply before it reads a byte.
	Memory *memlimit.Limits
}

// journalStream is systemd's variable naming the journal stream of a
// service's stderr (sd_journal_stream_fd(3); logging.JournalStreamEnv).
const journalStream = "JOURNAL_STREAM"

// Pre-auth user environment: nothing of the supervisor's.
var plainEnv = []string{"PATH=/usr/bin:/bin", "HOME=/", "LANG=C.UTF-8"}

// The children.
var (
	// Preauth is xpra-proxy-preauth: sniffing, TLS, HTTP, WebSocket,
	// hello and challenge, then the transport of TLS/WS connections. A
	// warm spare: its connection arrives later over ipc.
	Preauth = Spec{
		Kind: "preauth", Mode: []string{"--preauth"},
		Fds: []string{"ipc"}, Optional: []string{"front"}, // front: TCP listeners
		Env: plainEnv, Runs: AsPreauthUser, Setsid: true, Pdeathsig: syscall.SIGKILL,
		Sandbox: "preauth", Memory: &memlimit.Preauth,
	}
	// Control is xpra-proxy-control: the supervisor's :proxy socket,
	// bound by root and served unprivileged under a uid of its own.
	Control = Spec{
		Kind: "control", Mode: []string{"--control"},
		Fds: []string{"control", "ipc"},
		Env: plainEnv, Runs: AsControlUser, Setsid: true, Pdeathsig: syscall.SIGKILL,
		Sandbox: "control", Memory: &memlimit.Control,
	}
	// Metrics is xpra-proxy-metrics: Prometheus's scrapes on the
	// metrics-bind socket root bound, served unprivileged from the
	// supervisor's counters (ipc Metrics). It does what the control
	// process does (accept on a socket it was given, ask over ipc), so
	// it runs as that user under the same sandbox.
	Metrics = Spec{
		Kind: "metrics", Mode: []string{"--metrics"},
		Fds: []string{"metrics", "ipc"},
		Env: plainEnv, Runs: AsControlUser, Setsid: true, Pdeathsig: syscall.SIGKILL,
		Sandbox: "control", Memory: &memlimit.Control,
	}
	// Relay is xpra-proxy-worker --relay, as the session's owner; it
	// outlives the supervisor. Not sandboxed: the user may read and
	// trace their own processes anyway, and `xpra info` on its control
	// socket is theirs (ARCHITECTURE.md).
	Relay = Spec{
		Kind: "relay", Mode: []string{"--relay"},
		// session: start-session; rootcontrol: root's :proxy-PID; report: the relay's end (ipc.RelayEnded)
		Fds: []string{"client", "handover", "launch"}, Optional: []string{"session", "rootcontrol", "report"},
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}, Runs: AsSessionUser, Setsid: true,
	}
	// EarlyRelay is a warm relay: exec'd ahead of its login, as an
	// identity that logged in lately, so that exec and the Go runtime's
	// start-up are not paid after the verdict. It holds nothing of any
	// client until root, once a login is granted its identity, sends it
	// the three descriptors a Relay gets at exec (client, handover,
	// launch) on "start" (ipc.RelayFile); root closes "start" when it is
	// not needed, and it exits (supervisor/warm.go).
	EarlyRelay = Spec{
		Kind: "early relay", Mode: []string{"--relay", "--early"},
		Fds: []string{"start"}, Optional: []string{"session", "rootcontrol", "report"},
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}, Runs: AsSessionUser, Setsid: true,
	}
	// Query is xpra-proxy-worker --query=PID, run by `xpra-proxy list` as
	// a connection's user to ask its relay for figures.
	Query = Spec{
		Kind: "query", Env: []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}, Runs: AsSessionUser,
	}
	// PAM is xpra-proxy-pam, root, one per attempt, killed with all it
	// started at its timeout.
	PAM = Spec{
		Kind: "pam", Fds: []string{"pam"},
		Env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
		Runs: AsRoot, Setsid: true, Pdeathsig: syscall.SIGKILL,
	}
	// LDAP is xpra-proxy-ldap, one per LDAP login attempt: the password
	// check against the directory over the connection root opened
	// ("directory"), the request and reply on "ldap" (package ldapauth).
	// Killed at its timeout, and with the supervisor.
	LDAP = Spec{
		Kind: "ldap", Mode: []string{"--ldap"}, Fds: []string{"ldap", "directory"},
		Env: plainEnv, Runs: AsLDAPUser, Setsid: true, Pdeathsig: syscall.SIGKILL,
		Sandbox: "ldap", Memory: &memlimit.LDAP,
	}
	// Directory is xpra-proxy-directory, the shared directory's client
	// (PostgreSQL): one for the supervisor's life, restarted if it dies,
	// its requests and replies on "directory" (package pgdir). Killed
	// with the supervisor.
	Directory = Spec{
		Kind: "directory", Mode: []string{"--directory"}, Fds: []string{"directory"},
		Env: plainEnv, Runs: AsDirectoryUser, Setsid: true, Pdeathsig: syscall.SIGKILL,
		Sandbox: "directory", Memory: &memlimit.Directory,
	}
	// Encoder is xpra-proxy-encode's worker, exec'd by its root parent as
	// the encoder's user with the sockets the parent bound.
	Encoder = Spec{
		Kind: "encoder", Fds: []string{"listen"}, Optional: []string{"xpra"},
		Env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
		Runs: AsEncoderUser, Pdeathsig: syscall.SIGKILL,
	}
)

// WaitingComm is a warm relay's process name (/proc/PID/comm, what ps
// and pgrep show) while it waits for a login (EarlyRelay), so that it is
// told from a relay serving one; it takes the program's name back then.
const WaitingComm = "relay-waiting"

// All are the specs, for tests and documentation.
var All = []*Spec{&Preauth, &Control, &Metrics, &Relay, &EarlyRelay, &Query, &PAM, &LDAP, &Directory, &Encoder}

// Launch is one exec of a Spec.
type Launch struct {
	Path string
	Args []string // after Spec.Mode
	// Cred is the identity (nil: the parent's, only for AsRoot or a
	// parent that is not root, such as a test).
	Cred *syscall.Credential
	Env  []string            // this launch's variables (the user's HOME...)
	Fds  map[string]*os.File // by name: every one of Spec.Fds, any of Spec.Optional
	// Stdout and Stderr (nil: /dev/null and the parent's stderr, which is
	// the service's journal).
	Stdout, Stderr io.Writer
	Ctx            context.Context // nil: none; else killed when it ends
}

// Command builds the exec of l by the contract of s. It refuses a launch
// that breaks it: a missing or unknown descriptor, a root or missing
// credential for an unprivileged child.
func (s *Spec) Command(l Launch) (*exec.Cmd, error) {
	if s.Runs != AsRoot {
		switch {
		case l.Cred == nil && os.Geteuid() == 0:
			return nil, fmt.Errorf("child %s: no credential: it runs as the %s, not root", s.Kind, s.Runs)
		case l.Cred != nil && (l.Cred.Uid == 0 || l.Cred.Gid == 0):
			return nil, fmt.Errorf("child %s: uid %d gid %d: it must not run as root", s.Kind, l.Cred.Uid, l.Cred.Gid)
		}
	} else if l.Cred != nil {
		return nil, fmt.Errorf("child %s runs as root: no credential to set", s.Kind)
	}
	for name := range l.Fds {
		if !slices.Contains(s.Fds, name) && !slices.Contains(s.Optional, name) {
			return nil, fmt.Errorf("child %s: descriptor %q is not in its contract", s.Kind, name)
		}
	}
	var fds []namedfd.Fd
	for _, name := range append(slices.Clone(s.Fds), s.Optional...) {
		f, ok := l.Fds[name]
		if !ok && slices.Contains(s.Fds, name) {
			return nil, fmt.Errorf("child %s: descriptor %q missing", s.Kind, name)
		}
		if ok {
			if f == nil {
				return nil, fmt.Errorf("child %s: descriptor %q is nil", s.Kind, name)
			}
			fds = append(fds, namedfd.Fd{Name: name, File: f})
		}
	}
	args := append(slices.Clone(s.Mode), l.Args...)
	var cmd *exec.Cmd
	if l.Ctx != nil {
		cmd = exec.CommandContext(l.Ctx, l.Path, args...)
	} else {
		cmd = exec.Command(l.Path, args...)
	}
	cmd.Dir = "/"
	cmd.Env = append(slices.Clone(l.Env), s.Env...)
	if s.Memory != nil {
		cmd.Env = append(cmd.Env, s.Memory.Env()...)
	}
	for _, kv := range cmd.Env {
		if strings.HasPrefix(kv, namedfd.EnvVar+"=") {
			return nil, fmt.Errorf("child %s: the launch may not set $%s", s.Kind, namedfd.EnvVar)
		}
	}
	namedfd.Attach(cmd, fds...)
	cmd.Stdout = l.Stdout
	cmd.Stderr = l.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
		// The same stream as ours: the child's logger finds the journal
		// by it (package logging checks its stderr is the one named).
		if v, ok := os.LookupEnv(journalStream); ok {
			cmd.Env = append(cmd.Env, journalStream+"="+v)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: l.Cred, Setsid: s.Setsid, Pdeathsig: s.Pdeathsig}
	return cmd, nil
}

// Take is the child's first call in main: it takes the descriptors of
// the contract (every one of Fds, and of Optional those listed in with,
// which the child knows from its arguments) after checking no other is
// open, then, unless it runs as root, sets no_new_privs, refuses to go
// on as root and applies its memory ceiling (Memory). The child must not
// touch a descriptor before it returns.
func (s *Spec) Take(with ...string) (map[string]*os.File, error) {
	for _, name := range with {
		if !slices.Contains(s.Optional, name) {
			return nil, fmt.Errorf("child %s: %q is not an optional descriptor of its contract", s.Kind, name)
		}
	}
	want := append(slices.Clone(s.Fds), with...)
	if s.Runs == AsRoot {
		return namedfd.Take(want...)
	}
	fds, err := namedfd.TakeUnprivileged(want...)
	if err != nil {
		return nil, err
	}
	if s.Memory != nil {
		// Before the child reads a byte of anyone's: its ceiling.
		if _, err := memlimit.Apply(*s.Memory); err != nil {
			for _, f := range fds {
				f.Close()
			}
			return nil, fmt.Errorf("child %s: %w", s.Kind, err)
		}
	}
	return fds, nil
}

// Started says whether the process was exec'd with named descriptors,
// for programs that also run by hand (the encoder).
func Started() bool { return os.Getenv(namedfd.EnvVar) != "" }
