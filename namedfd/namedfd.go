// SPDX-License-Identifier: GPL-2.0-or-later

// Package namedfd passes file descriptors to exec'd children by name.
// The parent lists them in $XPRA_PROXY_FDS ("client=3,ipc=4"); the child
// takes them by name and checks, before doing anything else, that it
// holds no other descriptor than stdin, stdout, stderr and those: a
// descriptor leaked across exec would be a privilege leak.
package namedfd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// EnvVar carries the name=number list.
const EnvVar = "XPRA_PROXY_FDS"

// Fd is one descriptor to pass.
type Fd struct {
	Name string
	File *os.File
}

// Attach adds fds to cmd as ExtraFiles (numbered from 3 in order) and
// names them in cmd.Env.
func Attach(cmd *exec.Cmd, fds ...Fd) {
	var names []string
	for i, f := range fds {
		cmd.ExtraFiles = append(cmd.ExtraFiles, f.File)
		names = append(names, fmt.Sprintf("%s=%d", f.Name, 3+i))
	}
	cmd.Env = append(cmd.Env, EnvVar+"="+strings.Join(names, ","))
}

// Take returns the named descriptors the parent passed, after checking
// that exactly those (plus 0, 1 and 2) are open. Call it first in main.
func Take(want ...string) (map[string]*os.File, error) {
	spec := os.Getenv(EnvVar)
	os.Unsetenv(EnvVar)
	got := map[string]int{}
	for _, item := range strings.Split(spec, ",") {
		if item == "" {
			continue
		}
		name, num, ok := strings.Cut(item, "=")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 3 {
			return nil, fmt.Errorf("namedfd: malformed $%s entry %q", EnvVar, item)
		}
		got[name] = n
	}
	allowed := []int{0, 1, 2}
	for _, name := range want {
		n, ok := got[name]
		if !ok {
			return nil, fmt.Errorf("namedfd: descriptor %q was not passed ($%s=%q)", name, EnvVar, spec)
		}
		allowed = append(allowed, n)
	}
	if len(got) != len(want) {
		return nil, fmt.Errorf("namedfd: unexpected descriptors passed: %q, want %v", spec, want)
	}
	// Check before wrapping anything in *os.File: that may start the
	// runtime's poller, which opens descriptors of its own.
	open, err := OpenFds()
	if err != nil {
		return nil, err
	}
	for _, fd := range open {
		if !slices.Contains(allowed, fd) && !runtimeOwned(fd) {
			return nil, fmt.Errorf("namedfd: descriptor %d is open but was not passed by name (leaked across exec?)", fd)
		}
	}
	files := map[string]*os.File{}
	for _, name := range want {
		files[name] = os.NewFile(uintptr(got[name]), name)
	}
	return files, nil
}

// TakeUnprivileged is the start-up of every unprivileged child: Take the
// named descriptors, then set no_new_privs (so nothing it runs can gain
// privileges), then refuse to go on as root. Call it first in main; the
// child must not touch a descriptor before it returns without error.
func TakeUnprivileged(want ...string) (map[string]*os.File, error) {
	files, err := Take(want...)
	if err != nil {
		return nil, err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		closeAll(files)
		return nil, fmt.Errorf("namedfd: setting no_new_privs: %w", err)
	}
	if os.Geteuid() == 0 {
		closeAll(files)
		return nil, errors.New("namedfd: refusing to run as root")
	}
	return files, nil
}

func closeAll(files map[string]*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// runtimeOwned recognises what the Go runtime opens by itself before main:
// the cgroup CPU limit files it re-reads for GOMAXPROCS, and its poller.
func runtimeOwned(fd int) bool {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return false
	}
	return strings.HasPrefix(target, "/sys/fs/cgroup/") ||
		target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]" || target == "anon_inode:[pidfd]"
}

// OpenFds lists this process's open descriptors, without the one used to
// read the list. It uses raw system calls so that it opens nothing else.
func OpenFds() ([]int, error) {
	dfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("namedfd: opening /proc/self/fd: %w", err)
	}
	defer unix.Close(dfd)
	var out []int
	buf := make([]byte, 4096)
	for {
		n, err := unix.ReadDirent(dfd, buf)
		if err != nil {
			return nil, fmt.Errorf("namedfd: reading /proc/self/fd: %w", err)
		}
		if n == 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil && fd != dfd {
				out = append(out, fd)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// CloseOnExecAll marks every open descriptor above stderr close-on-exec,
// except keep. A process that execs children calls it at start-up so a
// descriptor it inherited without the flag cannot reach them.
func CloseOnExecAll(keep ...int) error {
	open, err := OpenFds()
	if err != nil {
		return err
	}
	for _, fd := range open {
		if fd > 2 && !slices.Contains(keep, fd) {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}
