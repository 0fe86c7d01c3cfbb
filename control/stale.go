// SPDX-License-Identifier: GPL-2.0-or-later

package control

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// SweepStale removes the control sockets that dead relay workers of uid
// left in dir: files named like ours (<hostname>-proxy-<pid>) that are
// sockets owned by uid, whose pid is no longer running and where a
// connect is refused, as xpra's own clean-up decides. A worker killed by
// SIGKILL (or a panic) cannot remove its socket itself; the next relay of
// the same user does, so that `xpra list` never shows it as UNKNOWN.
// The pid check keeps a live worker's socket, even in the instant
// between its bind and its listen, when a connect is refused too.
// It returns the paths removed.
func SweepStale(dir, hostname string, uid int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sweeping %s: %w", dir, err)
	}
	prefix := hostname + "-proxy-"
	var removed []string
	var errs []error
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), prefix))
		if !strings.HasPrefix(e.Name(), prefix) || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if e.Type()&os.ModeSocket == 0 {
			continue
		}
		path := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil || int(st.Uid) != uid {
			continue
		}
		if unix.Kill(pid, 0) != unix.ESRCH {
			continue // alive (or not ours to signal): never touched
		}
		c, err := net.DialTimeout("unix", path, probeTimeout)
		if err == nil {
			c.Close()
			continue // someone listens there after all
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing a dead control socket: %w", err))
			continue
		}
		removed = append(removed, path)
	}
	return removed, errors.Join(errs...)
}
