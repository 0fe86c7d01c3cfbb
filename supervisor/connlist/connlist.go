// SPDX-License-Identifier: GPL-2.0-or-later

// Package connlist finds the proxy's live connections for `xpra-proxy
// list`: relay workers are those in the supervisor's registry (root's
// own record, never what /proc says a process is), and each one's own figures
// (target, bytes) are asked of its control socket by a query process run
// as that connection's user, so root never parses what a user's process
// says beyond a bounded JSON line.
package connlist

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
)

// Conn is one relayed connection.
type Conn struct {
	Pid        int    `json:"pid"`
	User       string `json:"user"`
	UID        int    `json:"uid"`
	Source     string `json:"source"`
	Listener   string `json:"listener"`
	Transport  string `json:"transport"`
	Target     string `json:"target"`
	AgeSeconds int64  `json:"age_seconds"`
	FromClient int64  `json:"bytes_from_client"`
	ToClient   int64  `json:"bytes_to_client"`
	Control    string `json:"control_socket,omitempty"`
	Error      string `json:"error,omitempty"` // the control socket could not be asked
}

// maxReply bounds what a query process may print.
const maxReply = 64 << 10

// Find lists the live relays of the supervisor's registry (in runDir)
// and asks each for its figures.
func Find(ctx context.Context, worker, runDir string, socketDirs []string) ([]Conn, error) {
	// The query processes run as users and refuse a descriptor they were
	// not given by name: what this root process inherited (a terminal's,
	// a test harness's) must not reach them.
	if err := namedfd.CloseOnExecAll(); err != nil {
		return nil, err
	}
	recs, err := ReadRegistry(filepath.Join(runDir, RegistryFile))
	if err != nil {
		return nil, err
	}
	var out []Conn
	for _, r := range recs {
		if !r.Alive() {
			continue // ended since the supervisor last wrote the file
		}
		c := Conn{Pid: r.Pid, UID: r.UID, User: r.User, Source: r.Source, Listener: r.Listener, Transport: r.Transport}
		if t, err := startTime(r.Pid); err == nil {
			c.AgeSeconds = int64(time.Since(t).Seconds())
		}
		query(ctx, worker, socketDirs, &c)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out, nil
}

// query runs `worker --query=PID` as the connection's user.
func query(ctx context.Context, worker string, dirs []string, c *Conn) {
	u, err := user.LookupId(strconv.Itoa(c.UID))
	if err != nil {
		c.Error = err.Error()
		return
	}
	gid, _ := strconv.Atoi(u.Gid)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	args := []string{"--query=" + strconv.Itoa(c.Pid)}
	if len(dirs) > 0 {
		args = append(args, "--socket-dirs="+strings.Join(dirs, ","))
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: uint32(c.UID), Gid: uint32(gid), Groups: []uint32{}}
	}
	var stderr bytes.Buffer
	cmd, err := child.Query.Command(child.Launch{Path: worker, Args: args, Cred: cred, Ctx: ctx, Stderr: &stderr,
		Env: []string{"HOME=" + u.HomeDir, "USER=" + u.Username, fmt.Sprintf("XDG_RUNTIME_DIR=/run/user/%d", c.UID)}})
	if err != nil {
		c.Error = err.Error()
		return
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		c.Error = err.Error()
		return
	}
	if err := child.Start(cmd); err != nil {
		c.Error = err.Error()
		return
	}
	reply, _ := io.ReadAll(io.LimitReader(stdout, maxReply))
	if err := cmd.Wait(); err != nil {
		c.Error = strings.TrimSpace(stderr.String())
		if c.Error == "" {
			c.Error = err.Error()
		}
		return
	}
	if err := applyReply(c, reply); err != nil {
		c.Error = fmt.Sprintf("reply: %v", err)
	}
}

// applyReply takes a query process's figures into c. The process runs
// as the connection's user: its reply may say anything, so it only fills
// what root cannot know itself (root's registry has the transport; an
// older registry's record may lack it).
func applyReply(c *Conn, reply []byte) error {
	var got Conn
	if err := json.Unmarshal(reply, &got); err != nil {
		return err
	}
	c.Target, c.FromClient, c.ToClient, c.Control = got.Target, got.FromClient, got.ToClient, got.Control
	if c.Transport == "" {
		c.Transport = got.Transport
	}
	return nil
}

// startTime is when pid started, from /proc/PID/stat field 22 (clock
// ticks after boot; Linux's USER_HZ is 100 on every architecture Go runs on).
func startTime(pid int) (time.Time, error) {
	ticks, err := StartTicks(pid)
	if err != nil {
		return time.Time{}, err
	}
	var info syscall.Sysinfo_t
	if err := syscall.Sysinfo(&info); err != nil {
		return time.Time{}, err
	}
	boot := time.Now().Add(-time.Duration(info.Uptime) * time.Second)
	return boot.Add(time.Duration(ticks) * 10 * time.Millisecond), nil
}

// Write prints conns as a table, for root's terminal. Target, Error and
// (from an older registry) Transport come from a process of the
// connection's user, so every field is printed with anything that is not
// a printable character replaced: an escape sequence in a target name
// must not reach the terminal, nor a newline forge a row.
func Write(w io.Writer, conns []Conn) {
	fmt.Fprintf(w, "%-8s %-12s %-22s %-9s %-28s %12s %12s %8s\n", "PID", "USER", "SOURCE", "TRANSPORT", "TARGET", "FROM-CLIENT", "TO-CLIENT", "AGE")
	for _, c := range conns {
		target := c.Target
		if c.Error != "" {
			target = "? (" + c.Error + ")"
		}
		fmt.Fprintf(w, "%-8d %-12s %-22s %-9s %-28s %12d %12d %8s\n", c.Pid, printable(c.User), printable(c.Source),
			printable(c.Transport), printable(target), c.FromClient, c.ToClient, (time.Duration(c.AgeSeconds) * time.Second).String())
	}
}

// printable replaces what is not a printable character (controls,
// invalid UTF-8, format characters such as bidi overrides) with '?'.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}
