// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Root's way to a relay's :proxy-PID. A relay's own control socket is in
// its user's socket directory (/run/user/UID/xpra), which root's xpra
// client never searches (its own are /run/user/0/xpra, /run/xpra and
// ~/.xpra, in xpra 3.1.3 and 6.5.3 alike), so `xpra info :proxy-PID` as
// root waited 20 s and found nothing. The supervisor therefore binds a
// second socket for each relay, <host>-proxy-<pid> beside its own :proxy
// (default /run/xpra), owned by root with mode 0600 so that only root can
// connect, and hands the listening descriptor to the relay, which serves
// it like its own. Not a symbolic link to the user's socket: the user
// could point that at any socket, and root's `xpra stop :proxy-PID` would
// stop whatever it names. The supervisor removes the file when the relay
// ends (the relay cannot: /run/xpra is root's).

// rootControlDir is where the root-only sockets go: the directory of the
// supervisor's own control socket, none when that is off.
func rootControlDir(cfg Config) string {
	switch cfg.ControlSocket {
	case "off":
		return ""
	case "":
		return filepath.Dir(DefaultControlSocket())
	}
	return filepath.Dir(cfg.ControlSocket)
}

// rootControlPath is the root-only socket of relay pid, named as the
// relay names its own (control.Path; not imported: root links no
// package that parses what control clients send).
func (s *Supervisor) rootControlPath(pid int) string {
	host, _ := os.Hostname()
	return filepath.Join(s.rootCtlDir, host+"-proxy-"+strconv.Itoa(pid))
}

// rootControl is a root-only listening socket, bound under a hidden name
// until its relay's pid is known.
type rootControl struct {
	file *os.File // the listening descriptor, for the relay
	tmp  string
}

// bindRootControl binds and listens on a hidden name in the directory
// (made 0755 like xpra's /run/xpra when missing). Nil, with the reason
// logged, when there is no directory or it fails: the relay then has
// only its own socket, as before.
func (s *Supervisor) bindRootControl() *rootControl {
	if s.rootCtlDir == "" {
		return nil
	}
	rc, err := bindRootControl(s.rootCtlDir)
	if err != nil {
		s.log.Warn("no root control socket for the relay: root's xpra info :proxy-PID will not find it", "err", err)
		return nil
	}
	return rc
}

func bindRootControl(dir string) (*rootControl, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("root control socket directory: %w", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("root control socket directory: %w", err)
		}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("root control socket name: %w", err)
	}
	tmp := filepath.Join(dir, ".xpra-proxy-relay-"+hex.EncodeToString(b[:]))
	// The file is born 0600: no one but root ever connects, not even
	// while it is being set up.
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("root control socket: %w", err)
	}
	l.SetUnlinkOnClose(false) // its name moves; the supervisor removes it
	f, err := l.File()
	l.Close()
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("root control socket: %w", err)
	}
	return &rootControl{file: f, tmp: tmp}, nil
}

// place names the socket for the relay's pid (replacing whatever has the
// name: in a directory a group may write to, only root's own file may
// answer root) and drops the supervisor's descriptor.
func (s *Supervisor) placeRootControl(rc *rootControl, pid int) {
	rc.file.Close()
	if err := os.Rename(rc.tmp, s.rootControlPath(pid)); err != nil {
		os.Remove(rc.tmp)
		s.log.Warn("root control socket", "worker", pid, "err", err)
	}
}

// abandon undoes bindRootControl when no relay was started.
func (rc *rootControl) abandon() {
	rc.file.Close()
	os.Remove(rc.tmp)
}

// removeRootControl removes relay pid's root-only socket once it ended.
func (s *Supervisor) removeRootControl(pid int) {
	if s.rootCtlDir == "" {
		return
	}
	if err := os.Remove(s.rootControlPath(pid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("removing the root control socket of an ended relay", "worker", pid, "err", err)
	}
}

// sweepRootControl removes what relays that ended while no supervisor ran
// left behind: root's sockets named for a relay (or hidden ones of a
// supervisor that died between bind and exec) that refuse connections.
// A live relay, whoever started it, holds its socket's listening
// descriptor and accepts; others' files are never touched.
func sweepRootControl(dir string) (removed int, err error) {
	if dir == "" {
		return 0, nil
	}
	host, _ := os.Hostname()
	prefix := host + "-proxy-"
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("root control sockets: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		ours := strings.HasPrefix(name, ".xpra-proxy-relay-")
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			pid, perr := strconv.Atoi(rest)
			ours = perr == nil && pid > 0
		}
		if !ours || e.Type()&fs.ModeSocket == 0 {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uint32(os.Geteuid()) {
			continue
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			continue
		}
		if err := os.Remove(path); err == nil {
			removed++
		}
	}
	return removed, nil
}
