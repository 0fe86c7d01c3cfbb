// SPDX-License-Identifier: GPL-2.0-or-later

// Command xpra-proxy-encode is the shared encoder worker: one long-lived
// process, run as its own system user (the only one given the GPU device
// nodes), owning every encoding context of every session behind the
// proxy. Session workers connect to its unix socket (encode/client).
//
// Started as root with --user=NAME, it binds the socket, then runs
// itself as NAME (uid, gid and NAME's groups, set at exec) holding only
// the listening socket, and waits for it, passing SIGTERM/SIGINT on.
// Started as any other user (systemd's User=), it binds the socket
// itself. It refuses to serve as root. With --xpra-socket it also
// serves xpra's own encoder protocol there (encode/xpraenc), for 6.4+
// xpra servers started with --video-encoders=remote.
//
//	xpra-proxy-encode --user=xpra-encode --socket=/run/xpra-proxy-encode/socket \
//	    --allow-uids=1000-59999 --max-cpu=8 --max-per-user=16
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/encode/server"
	"github.com/xpra-proxy/xpra-proxy/logging"
)

func main() {
	os.Exit(run())
}

func run() int {
	socket := flag.String("socket", "/run/xpra-proxy-encode/socket", "unix socket to serve")
	userName := flag.String("user", "", "system user to run as (required when started as root)")
	allow := flag.String("allow-uids", "1000-59999", "uids that may connect: ranges like 1000-59999,65534, or 'any' (every uid but root; root only when listed)")
	maxPerGPU := flag.Int("max-per-gpu", 0, "contexts per GPU (0: NVML's capacity only)")
	maxGPUPerUser := flag.Int("max-gpu-per-user", 4, "GPU contexts per uid; past it the user's contexts use the CPU")
	maxCPU := flag.Int("max-cpu", 8, "x264 contexts in total; past it video is refused")
	maxPerUser := flag.Int("max-per-user", 16, "contexts of every kind per uid")
	maxUtil := flag.Uint("max-utilization", 90, "no new context on a GPU whose encoder is busier (percent)")
	maxW := flag.Int("max-width", 4096, "largest context width")
	maxH := flag.Int("max-height", 4096, "largest context height")
	maxConns := flag.Int("max-conns", 256, "connections in total")
	maxConnsPerUID := flag.Int("max-conns-per-uid", 16, "connections per uid")
	threads := flag.Int("threads", 0, "x264 threads per context (0: x264 chooses)")
	debug := flag.Bool("debug", false, "log every connection and context")
	statsUsers := flag.String("stats-users", "", "users (names or uids, comma-separated) who may ask for the counters only, never send frames: xpra-proxy's metrics process runs as xpra-proxy-control; a name not found yet is looked up again (at most every 10 s) when an unknown uid connects; root never")
	xpraSocket := flag.String("xpra-socket", "", "also serve xpra's encoder protocol here, for 6.4+ servers started with --video-encoders=remote (xpra's own path: /run/xpra/encoder); empty: off")
	flag.Parse()

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := logging.New(level).With("pid", os.Getpid())
	slog.SetDefault(log) // the encoder packages' default
	// Nothing this process runs may gain privileges; set before anything.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		log.Error("no_new_privs", "err", err)
		return 1
	}
	allowUID, err := parseUIDs(*allow)
	if err != nil {
		log.Error("--allow-uids", "err", err)
		return 2
	}

	ln, xln, err := listener(*socket, *xpraSocket, *userName, log)
	if errors.Is(err, errStopped) {
		return 0 // we were the root parent; the worker ran and stopped
	}
	if err != nil {
		log.Error("start-up", "err", err)
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		return 1
	}
	if os.Geteuid() == 0 || os.Getuid() == 0 {
		log.Error("refusing to serve as root: use --user=NAME or systemd User=")
		return 1
	}

	// After the root parent's return: only the serving process looks
	// the users up.
	statsUID := parseUsers(*statsUsers, log)

	p := pool.Open(nil, pool.Config{MaxPerGPU: *maxPerGPU, MaxGPUPerUser: *maxGPUPerUser, MaxCPU: *maxCPU,
		MaxPerUser: *maxPerUser, MaxUtilization: uint32(*maxUtil)}, log)
	defer p.Close()
	srv := server.New(server.Config{MaxWidth: *maxW, MaxHeight: *maxH, MaxConns: *maxConns, MaxConnsPerUID: *maxConnsPerUID,
		AllowUID: allowUID, StatsUID: statsUID.allowed, Threads: *threads}, p, log)

	stopXpra := serveXpra(xln, *xpraSocket, srv, p, log)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		log.Info("encoder: stopping", "signal", s)
		stopXpra()
		srv.Close()
	}()
	st := srv.Status()
	log.Info("encoder: serving", "socket", *socket, "uid", os.Getuid(), "no_gpu", st.Pool.NoGPU, "gpus", len(st.Pool.Devices))
	if err := srv.Serve(ln); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}

// parseUIDs reads "1000-59999,65534" or "any". Root is allowed only
// when a range names it: relays never run as root.
func parseUIDs(s string) (func(uint32) bool, error) {
	if s == "any" {
		return func(uid uint32) bool { return uid != 0 }, nil
	}
	type span struct{ lo, hi uint32 }
	var spans []span
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("bad range %q", part)
			}
		}
		spans = append(spans, span{uint32(a), uint32(b)})
	}
	return func(uid uint32) bool {
		for _, sp := range spans {
			if uid >= sp.lo && uid <= sp.hi {
				return true
			}
		}
		return false
	}, nil
}

// statsUsers is --stats-users: names or uids admitted for Stats only.
// A name not found is looked up again at most every retryEvery, when a
// uid outside --allow-uids connects: the metrics user belongs to
// xpra-proxy's package, which may be installed after this one (or not
// at all), and the encoder should not need a restart for it. Root is
// never admitted: its processes have no business here.
type statsUsers struct {
	log     *slog.Logger
	now     func() time.Time
	lookup  func(name string) (*user.User, error)
	mu      sync.Mutex
	uids    map[uint32]bool
	missing []string
	next    time.Time // the next lookup of missing
}

const retryEvery = 10 * time.Second

func parseUsers(s string, log *slog.Logger) *statsUsers {
	u := &statsUsers{log: log, now: time.Now, lookup: lookupUser, uids: map[uint32]bool{}}
	for _, name := range strings.Split(s, ",") {
		if name = strings.TrimSpace(name); name != "" {
			u.missing = append(u.missing, name)
		}
	}
	u.resolve()
	for _, name := range u.missing {
		log.Warn("--stats-users: not found yet; looked up again when an unknown uid connects", "user", name)
	}
	return u
}

// resolve looks the missing names up; u.mu held or not yet shared.
func (u *statsUsers) resolve() {
	var still []string
	for _, name := range u.missing {
		usr, err := u.lookup(name)
		if err != nil {
			still = append(still, name)
			continue
		}
		uid, err := strconv.ParseUint(usr.Uid, 10, 32)
		if err != nil || uid == 0 {
			u.log.Warn("--stats-users: skipped", "user", name, "uid", usr.Uid)
			continue
		}
		u.uids[uint32(uid)] = true
	}
	u.missing = still
	u.next = u.now().Add(retryEvery)
}

// lookupUser finds a user by name, else by uid.
func lookupUser(name string) (*user.User, error) {
	usr, err := user.Lookup(name)
	if err != nil {
		usr, err = user.LookupId(name)
	}
	return usr, err
}

// allowed is server.Config.StatsUID.
func (u *statsUsers) allowed(uid uint32) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.uids[uid] && len(u.missing) > 0 && !u.now().Before(u.next) {
		u.resolve()
	}
	return u.uids[uid]
}

// listener returns the socket to serve: inherited from our root parent,
// or bound here. As root it binds, runs the worker as the user and waits
// for it (errStopped when the worker ended cleanly). listen() is always
// called by the serving process, after any drop: the kernel records the
// listener's credentials then, and clients check them (SO_PEERCRED) to
// know they reached the encoder's user.
func listener(path, xpraPath, userName string, log *slog.Logger) (ln, xln *net.UnixListener, err error) {
	if child.Started() {
		fds, err := child.Encoder.Take(optionalFds(xpraPath)...)
		if err != nil {
			return nil, nil, err
		}
		if err := checkUser(userName); err != nil {
			return nil, nil, err
		}
		return listenBoth(fds["listen"], fds["xpra"])
	}
	if os.Geteuid() != 0 {
		if err := checkUser(userName); err != nil {
			return nil, nil, err
		}
		f, xf, err := bindBoth(path, xpraPath, false)
		if err != nil {
			return nil, nil, err
		}
		return listenBoth(f, xf)
	}
	if userName == "" {
		return nil, nil, errors.New("started as root without --user: the encoder runs as its own system user")
	}
	u, err := user.Lookup(userName)
	if err != nil {
		return nil, nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 {
		return nil, nil, fmt.Errorf("--user=%s is root", userName)
	}
	f, xf, err := bindBoth(path, xpraPath, true)
	if err != nil {
		return nil, nil, err
	}
	// Root bound them in its own directory, so root removes them.
	defer os.Remove(path)
	if xpraPath != "" {
		defer os.Remove(xpraPath)
	}
	if xf != nil {
		defer xf.Close()
	}
	groups, err := groupIDs(u)
	if err != nil {
		return nil, nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	// The identity is set by the kernel at exec (never changed inside this
	// Go process); the child holds only the listening sockets, by name.
	if err := closeOnExecAll(); err != nil {
		return nil, nil, err
	}
	fds := map[string]*os.File{"listen": f}
	if xf != nil {
		fds["xpra"] = xf
	}
	cmd, err := child.Encoder.Command(child.Launch{Path: exe, Args: os.Args[1:], Fds: fds, Stdout: os.Stdout,
		Cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}})
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("start the encoder as %s: %w", userName, err)
	}
	f.Close()
	log.Info("encoder: started as its user", "user", userName, "uid", uid, "worker_pid", cmd.Process.Pid)
	return nil, nil, waitChild(cmd, log)
}

// waitChild is all the root parent does once the worker runs: pass
// SIGTERM/SIGINT on and exit when it does.
func waitChild(cmd *exec.Cmd, log *slog.Logger) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s) // it may have exited already: Wait reports that
		}
	}()
	err := cmd.Wait()
	signal.Stop(sigs)
	if err != nil {
		return fmt.Errorf("encoder worker: %w", err)
	}
	log.Info("encoder: worker exited")
	return errStopped
}

// errStopped: the worker run by this root parent ended cleanly.
var errStopped = errors.New("worker exited")

// groupIDs lists the user's groups as initgroups would: the GPU device
// nodes are usually reachable through "video" or "render".
func groupIDs(u *user.User) ([]uint32, error) {
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	var out []uint32
	for _, id := range ids {
		n, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("group id %q of %s: %w", id, u.Username, err)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// listen starts listening on a bound socket and wraps it.
func listen(f *os.File) (*net.UnixListener, error) {
	defer f.Close()
	if err := unix.Listen(int(f.Fd()), 128); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("listener is not a unix socket")
	}
	return ul, nil
}

// checkUser: a non-root start with --user must already be that user.
func checkUser(name string) error {
	if name == "" {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	if u.Uid != strconv.Itoa(os.Getuid()) {
		return fmt.Errorf("running as uid %d, not --user=%s (%s)", os.Getuid(), name, u.Uid)
	}
	return nil
}

// bind binds the socket (0666: who may connect is decided by peer
// credentials) without listening, replacing a stale socket but never a
// live worker's. As root (asRoot) it binds only in a directory that root
// owns and no one else can change, all the way up, making the last
// component if missing: root then never follows a path the encoder user
// could swap, and never chowns anything (a pre-existing directory handed
// to the user, then a symlink planted in it, turned a root-owned file
// into one the user owned). The worker needs no write access there: it
// serves the socket root bound, and root removes it when the worker ends.
// Not as root (systemd's User=, RuntimeDirectory=), the directory is the
// user's own.
func bind(path string, asRoot bool) (*os.File, error) {
	dir := filepath.Dir(path)
	if asRoot {
		if err := rootDir(dir); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return bindSocket(path)
}

// rootDir makes dir (its parent must exist) or checks the one there: a
// real directory, and it and every ancestor owned by root and writable by
// no one else (a sticky ancestor such as /tmp is fine: no one can rename
// root's entries in it).
func rootDir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("socket directory: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Lstat(d)
		if err != nil {
			return fmt.Errorf("socket directory: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		switch {
		case !fi.IsDir():
			return fmt.Errorf("socket directory %s is not a directory (%s)", d, fi.Mode().Type())
		case !ok || st.Uid != 0:
			return fmt.Errorf("socket directory %s is not owned by root: the encoder's root parent binds only where no user can swap the path", d)
		case d == dir && fi.Mode().Perm()&0o022 != 0, d != dir && fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0:
			return fmt.Errorf("socket directory %s (mode %04o) is writable by others: the encoder's root parent binds only where no user can swap the path", d, fi.Mode().Perm())
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

// bindSocket binds the socket as bind does, in a directory that exists.
func bindSocket(path string) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another encoder worker is serving it", path)
		}
		os.Remove(path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		f.Close()
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	// A path in a directory that only its owner (root, or the user
	// serving it) can change: chmod reaches the socket just bound.
	if err := os.Chmod(path, 0o666); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// closeOnExecAll marks every descriptor but 0, 1 and 2 close-on-exec:
// whatever our own parent leaked to us must not reach the worker (it gets
// the listening socket through ExtraFiles, which is dup'ed past this).
func closeOnExecAll() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list descriptors: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC) // the ReadDir's own fd is gone by now: EBADF is fine
	}
	return nil
}
