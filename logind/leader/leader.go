// SPDX-License-Identifier: GPL-2.0-or-later

// Package leader is the session leader of one proxy-started session, the
// main process of its transient unit (see package logind). Started as root by
// systemd, it
//
//  1. runs the PAM account and session stacks of the "xpra-proxy" service,
//     with PAM_RHOST set to the client's address, so that pam_systemd
//     registers the logind session (Remote=yes, RemoteHost) with this process
//     as its leader and moves it into the session's scope;
//  2. starts the payload (xpra) as the user: uid, primary gid, supplementary
//     groups, the user's home as working directory, PAM's environment;
//  3. gives up root for good (groups, then gid, then uid, then checks);
//  4. passes SIGTERM/SIGINT/SIGHUP on to the payload and waits for it;
//  5. closes the PAM session on the handle that opened it, and has logind
//     terminate the session, so processes the payload left behind go too and
//     the session is never left "closing".
//
// PAM runs on the locked main thread of this freshly exec'd, single-purpose
// process, never inside the multi-threaded supervisor.
package leader

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/msteinert/pam/v2"
	"github.com/xpra-proxy/xpra-proxy/logging"
	"golang.org/x/sys/unix"
)

// Linux-PAM's PAM_XDISPLAY item, which pam_systemd reads as the session's
// X11 display (msteinert/pam does not name it).
const itemXDisplay pam.Item = 11

// Options is the leader's command line (logind.LeaderArgs builds it).
type Options struct {
	User       string
	PAMService string
	Type       string
	Class      string
	Desktop    string
	RemoteHost string
	Display    string
	Command    []string
}

// ParseArgs parses the leader's arguments (without the program name).
func ParseArgs(args []string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("xpra-proxy-session", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.User, "user", "", "login name")
	fs.StringVar(&o.PAMService, "pam-service", "xpra-proxy", "PAM service")
	fs.StringVar(&o.Type, "type", "x11", "XDG_SESSION_TYPE")
	fs.StringVar(&o.Class, "class", "user", "XDG_SESSION_CLASS")
	fs.StringVar(&o.Desktop, "desktop", "xpra", "XDG_SESSION_DESKTOP")
	fs.StringVar(&o.RemoteHost, "rhost", "", "PAM_RHOST: the client's address")
	fs.StringVar(&o.Display, "display", "", "PAM_XDISPLAY")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("arguments: %w", err)
	}
	o.Command = fs.Args()
	switch {
	case o.User == "":
		return o, errors.New("arguments: no --user")
	case o.PAMService == "":
		return o, errors.New("arguments: no --pam-service")
	case len(o.Command) == 0 || !filepath.IsAbs(o.Command[0]):
		return o, fmt.Errorf("arguments: the command must start with an absolute path, got %q", o.Command)
	}
	return o, nil
}

// Main runs the leader and returns its exit status: the payload's, 0 if it
// ended because the session was stopped, 1 if the session could not start.
func Main(args []string) int {
	runtime.LockOSThread() // PAM stays on the main thread, and so does the child's parent-death signal
	log := logging.New(nil)
	o, err := ParseArgs(args)
	if err != nil {
		log.Error("xpra-proxy-session", "err", err)
		return 2
	}
	log = log.With("user", o.User)
	status, err := run(o, log)
	if err != nil {
		log.Error("session", "err", err)
	}
	return status
}

type account struct {
	uid, gid uint32
	groups   []uint32
	name     string
	home     string
	shell    string
}

func lookup(name string) (account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, err
	}
	a := account{name: u.Username, home: u.HomeDir, shell: "/bin/sh"}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return account{}, err
	}
	a.uid, a.gid = uint32(uid), uint32(gid)
	if a.uid == 0 {
		return account{}, errors.New("uid 0: no sessions for root")
	}
	gids, err := u.GroupIds() // getgrouplist, as initgroups does
	if err != nil {
		return account{}, fmt.Errorf("groups: %w", err)
	}
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return account{}, fmt.Errorf("group id %q: %w", g, err)
		}
		a.groups = append(a.groups, uint32(n))
	}
	if sh := loginShell(a.name); sh != "" {
		a.shell = sh
	}
	return a, nil
}

// loginShell reads the user's shell from /etc/passwd (os/user does not
// report it); other NSS sources get /bin/sh.
func loginShell(name string) string {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == name {
			return f[6]
		}
	}
	return ""
}

func run(o Options, log *slog.Logger) (int, error) {
	if os.Geteuid() != 0 {
		return 1, errors.New("must be started as root (systemd starts it as a session's unit)")
	}
	acct, err := lookup(o.User)
	if err != nil {
		return 1, fmt.Errorf("user %q: %w", o.User, err)
	}
	// Signals are caught before anything starts, and passed on once the
	// payload runs; one that comes earlier stops the start.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)

	t, err := pam.StartFunc(o.PAMService, o.User, func(s pam.Style, msg string) (string, error) {
		switch s {
		case pam.TextInfo, pam.ErrorMsg:
			log.Info("pam", "message", msg)
			return "", nil
		}
		return "", fmt.Errorf("PAM asked %q: a session leader cannot answer prompts", msg)
	})
	if err != nil {
		return 1, fmt.Errorf("pam_start(%s): %w", o.PAMService, err)
	}
	defer t.End()
	items := []struct {
		item pam.Item
		v    string
	}{{pam.Rhost, o.RemoteHost}, {itemXDisplay, o.Display}}
	for _, it := range items {
		if it.v != "" {
			if err := t.SetItem(it.item, it.v); err != nil {
				return 1, fmt.Errorf("pam_set_item: %w", err)
			}
		}
	}
	for _, kv := range []string{"XDG_SESSION_TYPE=" + o.Type, "XDG_SESSION_CLASS=" + o.Class, "XDG_SESSION_DESKTOP=" + o.Desktop} {
		if err := t.PutEnv(kv); err != nil {
			return 1, fmt.Errorf("pam_putenv: %w", err)
		}
	}
	if err := t.AcctMgmt(pam.Silent); err != nil {
		return 1, fmt.Errorf("account refused by PAM: %w", err)
	}
	if err := t.SetCred(pam.EstablishCred | pam.Silent); err != nil {
		return 1, fmt.Errorf("pam_setcred: %w", err)
	}
	if err := t.OpenSession(pam.Silent); err != nil {
		return 1, fmt.Errorf("pam_open_session: %w", err)
	}
	pamEnv, err := t.GetEnvList()
	if err != nil {
		closeSession(t, log)
		return 1, fmt.Errorf("pam_getenvlist: %w", err)
	}
	id := pamEnv["XDG_SESSION_ID"]
	log = log.With("session", id)

	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Env = childEnv(os.Environ(), acct, pamEnv)
	cmd.Dir = "/"
	if st, err := os.Stat(acct.home); err == nil && st.IsDir() {
		cmd.Dir = acct.home
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: acct.uid, Gid: acct.gid, Groups: acct.groups},
		Setsid:     true,
		Pdeathsig:  syscall.SIGTERM, // should this process be killed, the payload goes too
	}
	stopped := false
	select {
	case s := <-sigs:
		log.Info("stopped before the payload started", "signal", s)
		stopped = true
	default:
		err = cmd.Start()
	}
	if stopped || err != nil {
		closeSession(t, log)
		terminate(id, log)
		if stopped {
			return 0, nil
		}
		return 1, fmt.Errorf("starting %s: %w", o.Command[0], err)
	}
	log.Info("session started", "pid", cmd.Process.Pid, "command", o.Command[0], "rhost", o.RemoteHost)

	if err := dropPrivileges(acct); err != nil {
		// Nothing more may run as root here: end the payload and the session.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		closeSession(t, log)
		terminate(id, log)
		return 1, err
	}

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
wait:
	for {
		select {
		case s := <-sigs:
			stopped = true
			log.Info("stopping the session", "signal", s)
			_ = cmd.Process.Signal(s)
		case waitErr = <-done:
			break wait
		}
	}
	status := 0
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled() && stopped:
		case ws.Signaled():
			status = 128 + int(ws.Signal())
		default:
			status = ws.ExitStatus()
		}
	default:
		status = 1
	}
	log.Info("session ended", "payload", waitErr, "status", status)
	closeSession(t, log)
	terminate(id, log)
	return status, nil
}

// childEnv: the unit's environment without what concerns this process alone,
// the user's identity, then PAM's variables (XDG_SESSION_ID,
// XDG_RUNTIME_DIR, ...) over it all.
func childEnv(base []string, a account, pamEnv map[string]string) []string {
	drop := map[string]bool{"SYSTEMD_EXEC_PID": true, "NOTIFY_SOCKET": true, "MAINPID": true,
		"MANAGERPID": true, "LISTEN_PID": true, "LISTEN_FDS": true, "LISTEN_FDNAMES": true,
		"WATCHDOG_PID": true, "WATCHDOG_USEC": true,
		"HOME": true, "USER": true, "LOGNAME": true, "SHELL": true}
	var env []string
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] && pamEnv[name] == "" {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+a.home, "USER="+a.name, "LOGNAME="+a.name, "SHELL="+a.shell)
	for k, v := range pamEnv {
		if !drop[k] {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// dropPrivileges makes this process the user for good: groups, then gid,
// then uid (each needs root), then checks that root cannot be had back. The
// C library's set*id reach every thread of the process.
func dropPrivileges(a account) error {
	groups := make([]int, len(a.groups))
	for i, g := range a.groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(int(a.gid), int(a.gid), int(a.gid)); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(int(a.uid), int(a.uid), int(a.uid)); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	ru, eu, su := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	if ru != int(a.uid) || eu != int(a.uid) || su != int(a.uid) || rg != int(a.gid) || eg != int(a.gid) || sg != int(a.gid) {
		return fmt.Errorf("privileges not dropped: uids %d/%d/%d gids %d/%d/%d", ru, eu, su, rg, eg, sg)
	}
	if err := syscall.Setuid(0); err == nil {
		return errors.New("privileges not dropped: setuid(0) still works")
	}
	return nil
}

// closeSession runs the PAM close stack on the handle that opened the
// session (pam_systemd releases the session there).
func closeSession(t *pam.Transaction, log *slog.Logger) {
	if err := t.CloseSession(pam.Silent); err != nil {
		log.Warn("pam_close_session", "err", err)
	}
	if err := t.SetCred(pam.DeleteCred | pam.Silent); err != nil {
		log.Warn("pam_setcred(DELETE)", "err", err)
	}
}

// terminate has logind stop the session's scope, which ends what the payload
// left running (logind lets a session's owner do that). Without it, a
// leftover process would keep the session "closing" where
// KillUserProcesses=no. This process is in the scope too, and is done.
func terminate(id string, log *slog.Logger) {
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bus, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		log.Warn("terminating the session", "err", err)
		return
	}
	defer bus.Close()
	err = bus.Object("org.freedesktop.login1", "/org/freedesktop/login1").
		CallWithContext(ctx, "org.freedesktop.login1.Manager.TerminateSession", 0, id).Err
	var de dbus.Error
	if err != nil && !(errors.As(err, &de) && de.Name == "org.freedesktop.login1.NoSuchSession") {
		log.Warn("terminating the session", "err", err)
	}
}
