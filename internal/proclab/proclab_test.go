// SPDX-License-Identifier: GPL-2.0-or-later

package proclab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := Read(os.Getpid())
	if p.Status["Pid"] != strconv.Itoa(os.Getpid()) {
		t.Errorf("Pid %q, want %d", p.Status["Pid"], os.Getpid())
	}
	if want := fmt.Sprintf("%d", os.Getuid()); !strings.HasPrefix(p.Status["Uid"], want+"\t") {
		t.Errorf("Uid %q, want %s first", p.Status["Uid"], want)
	}
	if got, want := p.FDs[int(f.Fd())], fmt.Sprintf("/proc/%d/status", os.Getpid()); got != want {
		t.Errorf("fd %d → %q, want %q", f.Fd(), got, want)
	}
	if gone := Read(-1); len(gone.Status) != 0 || len(gone.FDs) != 0 {
		t.Errorf("no such process read as %v", gone)
	}
}

// recorder keeps the errors a check reports instead of failing the test.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestCheckConfined(t *testing.T) {
	confined := func(change func(p *Proc)) Proc {
		p := Proc{PID: 42, Status: map[string]string{
			"Name": "xpra-proxy-wor", "Uid": "1000\t1000\t1000\t1000", "Gid": "1000\t1000\t1000\t1000",
			"Groups": "27 1000 100", "CapEff": "0000000000000000", "CapPrm": "0000000000000000",
			"CapInh": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1",
		}, FDs: map[int]string{
			0: "/dev/null", 1: "pipe:[1]", 2: "pipe:[2]", 3: "socket:[10]", 4: "anon_inode:[eventpoll]",
			5: "/sys/fs/cgroup/user.slice/cgroup.procs",
		}}
		if change != nil {
			change(&p)
		}
		return p
	}
	for _, c := range []struct {
		name string
		p    Proc
		want string // in the one error, "" for none
	}{
		{"confined", confined(nil), ""},
		{"saved uid root", confined(func(p *Proc) { p.Status["Uid"] = "1000\t1000\t0\t1000" }), "Uid"},
		{"fs gid other", confined(func(p *Proc) { p.Status["Gid"] = "1000\t1000\t1000\t0" }), "Gid"},
		{"extra group", confined(func(p *Proc) { p.Status["Groups"] = "27 1000 100 0" }), "groups"},
		{"missing group", confined(func(p *Proc) { p.Status["Groups"] = "27 1000" }), "groups"},
		{"capability", confined(func(p *Proc) { p.Status["CapPrm"] = "0000000000200000" }), "CapPrm"},
		{"ambient", confined(func(p *Proc) { p.Status["CapAmb"] = "0000000000000400" }), "CapAmb"},
		{"no_new_privs unset", confined(func(p *Proc) { p.Status["NoNewPrivs"] = "0" }), "NoNewPrivs"},
		{"open file", confined(func(p *Proc) { p.FDs[7] = "/etc/shadow" }), "/etc/shadow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{TB: t}
			CheckConfined(r, c.p, 1000, 1000, []string{"100", "1000", "27"})
			switch {
			case c.want == "" && len(r.errs) > 0:
				t.Errorf("errors for a confined process: %q", r.errs)
			case c.want != "" && (len(r.errs) != 1 || !strings.Contains(r.errs[0], c.want)):
				t.Errorf("errors %q, want one about %s", r.errs, c.want)
			}
		})
	}
	t.Run("gone", func(t *testing.T) {
		r := &recorder{TB: t}
		CheckConfined(r, Proc{PID: 42}, 1000, 1000, nil)
		if len(r.errs) < 3 { // uid, gid, no_new_privs
			t.Errorf("a process gone passed: %q", r.errs)
		}
	})
}
