// SPDX-License-Identifier: GPL-2.0-or-later

// Package sockdir finds local xpra sessions the way xpra 3.1's "dotxpra"
// does: sockets named "<hostname>-<N>" in a list of socket directories,
// plus the 6.x session directories "<dir>/<N>/socket" (PROTOCOL.md §7.2).
package sockdir

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// State is the result of probing a session socket.
type State string

const (
	Live         State = "LIVE"         // connect() succeeded
	Dead         State = "DEAD"         // missing, not a socket, or EAGAIN
	Unknown      State = "UNKNOWN"      // ECONNREFUSED: starting up or stale
	Inaccessible State = "INACCESSIBLE" // EACCES / EPERM
)

// Session is one local display and the socket that serves it.
type Session struct {
	Display string // ":10"
	Path    string
	State   State
}

// probeTimeout bounds one connect(); a unix connect normally answers at
// once, so this only guards against a wedged peer.
const probeTimeout = time.Second

// maxDisplayDigits keeps display numbers within int range on every platform.
const maxDisplayDigits = 9

// Dirs returns Debian's xpra 3.1 socket directories for uid and home, in
// xpra's search order. The home entry is left out when home is empty.
func Dirs(uid int, home string) []string {
	dirs := []string{"/run/user/" + strconv.Itoa(uid) + "/xpra", "/run/xpra"}
	if home != "" {
		dirs = append(dirs, filepath.Join(home, ".xpra"))
	}
	return dirs
}

// Expand expands a caller-supplied socket-dirs list: a leading "~" becomes
// home, and $UID, $USER and $XDG_RUNTIME_DIR (also in ${...} form) are
// substituted. XDG_RUNTIME_DIR comes from the environment, falling back to
// "/run/user/<uid>" as xpra does. Other variables are left as written;
// entries that end up empty are dropped.
func Expand(dirs []string, uid int, user, home string) []string {
	runtime := os.Getenv("XDG_RUNTIME_DIR")
	if runtime == "" {
		runtime = "/run/user/" + strconv.Itoa(uid)
	}
	vars := map[string]string{
		"UID":             strconv.Itoa(uid),
		"USER":            user,
		"XDG_RUNTIME_DIR": runtime,
	}
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		if d == "~" {
			d = home
		} else if rest, ok := strings.CutPrefix(d, "~/"); ok {
			d = filepath.Join(home, rest)
		}
		d = expandVars(d, vars)
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// expandVars replaces $NAME and ${NAME} for the names in vars only, so
// that unrelated '$' characters in a path survive untouched.
func expandVars(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		name, end := "", i+1
		if end < len(s) && s[end] == '{' {
			if j := strings.IndexByte(s[end:], '}'); j > 0 {
				name, end = s[end+1:end+j], end+j+1
			}
		} else {
			for end < len(s) && isNameByte(s[end]) {
				end++
			}
			name = s[i+1 : end]
		}
		if v, ok := vars[name]; ok && name != "" {
			b.WriteString(v)
			i = end
			continue
		}
		b.WriteByte('$')
		i++
	}
	return b.String()
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Hostname is the host part of socket names: $XPRA_SOCKET_HOSTNAME if set,
// else the full os.Hostname() (3.1 uses socket.gethostname(), undotted
// names are not shortened), else "localhost" if even that fails.
func Hostname() string {
	if h := os.Getenv("XPRA_SOCKET_HOSTNAME"); h != "" {
		return h
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// SocketName is "<hostname>-<N>" for display ":N" or "N".
func SocketName(hostname, display string) (string, error) {
	if err := checkHostname(hostname); err != nil {
		return "", err
	}
	n, err := displayNumber(display)
	if err != nil {
		return "", err
	}
	return hostname + "-" + strconv.Itoa(n), nil
}

// checkHostname rejects names that would escape the socket directory.
func checkHostname(h string) error {
	if h == "" {
		return errors.New("sockdir: empty hostname")
	}
	if strings.ContainsAny(h, "/\x00") || h == "." || h == ".." {
		return fmt.Errorf("sockdir: invalid hostname %q", h)
	}
	return nil
}

// displayNumber parses ":N" or "N".
func displayNumber(display string) (int, error) {
	s := strings.TrimPrefix(display, ":")
	n, ok := parseNumber(s)
	if !ok {
		return 0, fmt.Errorf("sockdir: display %q is not :<number>", display)
	}
	return n, nil
}

func parseNumber(s string) (int, bool) {
	if s == "" || len(s) > maxDisplayDigits {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// Probe reports the state of the socket at path by connecting to it, as
// 3.1's get_server_state does. A path that is not a socket is DEAD: a
// connect() there would report ECONNREFUSED and look like a stale socket.
func Probe(path string) State {
	fi, err := os.Stat(path)
	if err != nil {
		return stateOf(err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return Dead
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err != nil {
		return stateOf(err)
	}
	c.Close()
	return Live
}

func stateOf(err error) State {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Unknown
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return Inaccessible
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EAGAIN):
		return Dead
	}
	// Timeouts and anything unexpected: the socket exists but we cannot
	// tell whether a server is behind it.
	return Unknown
}

// candidate is a socket path found for a display during a scan.
type candidate struct {
	n    int
	path string
}

// scan lists the session sockets in one directory: "<hostname>-<N>"
// sockets first (the 3.1 layout), then 6.x "<N>/socket".
func scan(dir, hostname string) ([]candidate, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var named, sessionDirs []candidate
	prefix := hostname + "-"
	for _, e := range entries {
		name := e.Name()
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			if n, ok := parseNumber(rest); ok && isSocket(filepath.Join(dir, name)) {
				named = append(named, candidate{n, filepath.Join(dir, name)})
			}
			continue
		}
		if n, ok := parseNumber(name); ok {
			p := filepath.Join(dir, name, "socket")
			if isSocket(p) {
				sessionDirs = append(sessionDirs, candidate{n, p})
			}
		}
	}
	return append(named, sessionDirs...), nil
}

// isSocket follows symlinks, as connect() would.
func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Type() == fs.ModeSocket
}

// List returns one Session per display found in dirs, sorted by display
// number, each probed. The first socket found for a display wins (dirs in
// order, "<hostname>-<N>" before "<N>/socket"), except that a LIVE socket
// is preferred over earlier ones that are not, so a stale socket in an
// early directory does not hide a running session. Missing directories are
// skipped; other directory errors are only reported when nothing at all
// was found.
func List(dirs []string, hostname string) ([]Session, error) {
	if err := checkHostname(hostname); err != nil {
		return nil, err
	}
	best := map[int]Session{}
	var errs []error
	for _, dir := range dirs {
		cands, err := scan(dir, hostname)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
				errs = append(errs, fmt.Errorf("sockdir: reading %s: %w", dir, err))
			}
			continue
		}
		for _, c := range cands {
			if prev, ok := best[c.n]; ok && prev.State == Live {
				continue
			}
			st := Probe(c.path)
			if _, ok := best[c.n]; !ok || st == Live {
				best[c.n] = Session{Display: ":" + strconv.Itoa(c.n), Path: c.path, State: st}
			}
		}
	}
	if len(best) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	nums := make([]int, 0, len(best))
	for n := range best {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	out := make([]Session, 0, len(nums))
	for _, n := range nums {
		out = append(out, best[n])
	}
	return out, nil
}

// Find returns the path of a LIVE socket for display (":N" or "N") in
// dirs, checking "<dir>/<hostname>-<N>" and then "<dir>/<N>/socket" for
// each dir in order. When none is live, the error lists what was found.
func Find(dirs []string, hostname, display string) (string, error) {
	name, err := SocketName(hostname, display)
	if err != nil {
		return "", err
	}
	n, _ := displayNumber(display) // validated by SocketName
	var found []string
	for _, dir := range dirs {
		for _, p := range []string{filepath.Join(dir, name), filepath.Join(dir, strconv.Itoa(n), "socket")} {
			st := Probe(p)
			if st == Live {
				return p, nil
			}
			if _, err := os.Lstat(p); err == nil {
				found = append(found, p+" is "+string(st))
			}
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("sockdir: no socket for display :%d in %s", n, strings.Join(dirs, ", "))
	}
	return "", fmt.Errorf("sockdir: display :%d is not live: %s", n, strings.Join(found, "; "))
}
