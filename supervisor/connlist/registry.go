// SPDX-License-Identifier: GPL-2.0-or-later

package connlist

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RegistryFile is the supervisor's list of the relays it started, in its
// run directory. Root writes it and root reads it: `xpra-proxy list`
// trusts nothing a process says of itself (a user's program may call
// itself xpra-proxy-worker --relay with any --peer it likes).
const RegistryFile = "relays.json"

// Record is what the supervisor keeps of one relay it started. StartTicks
// (from /proc/PID/stat) tells the relay from a later process that got
// its pid.
type Record struct {
	Pid        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	UID        int    `json:"uid"`
	User       string `json:"user"`
	Source     string `json:"source"`
	Listener   string `json:"listener"`
	Transport  string `json:"transport"`
}

// maxRegistry bounds what is read back (1,000 relays take ~150 kB).
const maxRegistry = 16 << 20

// StartTicks is pid's start time in clock ticks after boot.
func StartTicks(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Alive reports whether the relay of r still runs (its pid, not reused).
func (r Record) Alive() bool {
	t, err := StartTicks(r.Pid)
	return err == nil && t == r.StartTicks
}

// ReadRegistry reads the registry at path; a missing file is none.
func ReadRegistry(path string) ([]Record, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("relay registry: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("relay registry: %w", err)
	}
	if fi.Size() > maxRegistry {
		return nil, fmt.Errorf("relay registry %s: %d bytes, more than %d", path, fi.Size(), maxRegistry)
	}
	var recs []Record
	if err := json.NewDecoder(f).Decode(&recs); err != nil {
		return nil, fmt.Errorf("relay registry %s: %w", path, err)
	}
	return recs, nil
}

// WriteRegistry replaces the registry at path with recs, atomically
// (a reader sees the old list or the new one), readable by root only.
func WriteRegistry(path string, recs []Record) error {
	if recs == nil {
		recs = []Record{}
	}
	data, err := json.Marshal(recs)
	if err != nil {
		return fmt.Errorf("relay registry: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".relays-*")
	if err != nil {
		return fmt.Errorf("relay registry: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing there
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("relay registry: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("relay registry: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("relay registry: %w", err)
	}
	return nil
}
